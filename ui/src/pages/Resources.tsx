import { useState } from "react";
import type { ResourceState, ResourceView } from "../bindings";
import { describeError, type Backend } from "../backend";

const STATE_LABEL: Record<ResourceState, string> = {
  unknown: "Not used yet",
  connecting: "Connecting",
  active: "Active",
  idle: "Idle",
  broken: "Broken",
  unreachable: "Unreachable",
};

export function ResourcesPage({ resources, backend }: { resources: ResourceView[]; backend: Backend }) {
  const [query, setQuery] = useState("");
  const needle = query.trim().toLowerCase();
  const shown = needle
    ? resources.filter((r) =>
        [r.name, r.address, r.site, STATE_LABEL[r.state]].some((text) =>
          text.toLowerCase().includes(needle),
        ),
      )
    : resources;
  return (
    <section aria-labelledby="resources-heading">
      <h1 id="resources-heading">Resources</h1>
      {resources
        .filter((r) => r.enabled !== null)
        .map((r) => (
          <InternetSwitch key={r.id} resource={r} backend={backend} />
        ))}
      {resources.length > 0 && (
        <input
          type="search"
          className="search"
          aria-label="Search resources"
          placeholder="Search by name, address, site or state"
          value={query}
          onChange={(e) => setQuery(e.target.value)}
        />
      )}
      {resources.length === 0 ? (
        <p className="empty" data-testid="resources-empty">
          No resources yet. Once you are signed in, the resources your organisation grants you
          appear here.
        </p>
      ) : shown.length === 0 ? (
        <p className="empty">No resource matches “{query}”.</p>
      ) : (
        <table className="resources">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Address</th>
              <th scope="col">Site</th>
              <th scope="col">State</th>
              <th scope="col">Path</th>
              <th scope="col">RTT</th>
              <th scope="col">Traffic</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((resource) => (
              <tr key={resource.id} data-testid={`resource-${resource.id}`}>
                <td>{resource.name}</td>
                <td>
                  <code>{resource.address}</code>
                </td>
                <td>{resource.site}</td>
                <td>
                  <span className={`badge ${resource.state}`} data-testid="resource-state">
                    {STATE_LABEL[resource.state]}
                  </span>
                  {resource.reason && <span className="reason"> {resource.reason}</span>}
                </td>
                <td>{resource.path ?? "—"}</td>
                <td>{resource.rtt_ms === null ? "—" : `${resource.rtt_ms} ms`}</td>
                <td>
                  ↓ {formatBytes(resource.rx_bytes)} ↑ {formatBytes(resource.tx_bytes)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** The internet resource's switch: on, all traffic no other resource covers goes through its
 * gateway. The service owns the state; the checkbox shows what it last reported. */
function InternetSwitch({ resource, backend }: { resource: ResourceView; backend: Backend }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const toggle = async () => {
    setBusy(true);
    setError(null);
    const result = await backend.setResourceEnabled(resource.id, !resource.enabled);
    if (result.status === "error") setError(describeError(result.error));
    setBusy(false);
  };
  return (
    <div className="internet-switch">
      <label>
        <input
          type="checkbox"
          role="switch"
          data-testid="internet-switch"
          checked={resource.enabled === true}
          disabled={busy}
          onChange={() => void toggle()}
        />{" "}
        Send all traffic through Ember ({resource.name}, site {resource.site})
      </label>
      {error && <p role="alert">{error}</p>}
    </div>
  );
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}
