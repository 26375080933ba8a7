import type { ServiceStatus } from "../bindings";

/** Shown instead of the pages while the app cannot use the tunnel service. */
export function ServiceUnavailable({ status }: { status: ServiceStatus }) {
  switch (status.status) {
    case "connecting":
    case "connected":
      return (
        <section className="notice" data-testid="service-connecting" aria-busy="true">
          <h1>Connecting to the tunnel service…</h1>
        </section>
      );
    case "not_running":
      return (
        <section className="notice" data-testid="service-not-running">
          <h1>Tunnel service is not running</h1>
          <p>
            Ember needs its tunnel service to reach your resources. Start it with{" "}
            <code>sudo systemctl start ember-tunnel</code>, or reinstall Ember. This window
            updates by itself as soon as the service is back.
          </p>
          <p className="detail">{status.detail}</p>
        </section>
      );
    case "not_allowed":
      return (
        <section className="notice" data-testid="service-not-allowed">
          <h1>No permission to use the tunnel service</h1>
          <p>
            Your user must be in the <code>ember</code> group. If the installer just added you,
            log out and back in to finish the installation.
          </p>
          <p className="detail">{status.detail}</p>
        </section>
      );
    case "incompatible":
      return (
        <section className="notice" data-testid="service-incompatible">
          <h1>Update Ember</h1>
          <p>This app and the tunnel service are different versions. Install the latest Ember.</p>
          <p className="detail">{status.detail}</p>
        </section>
      );
  }
}
