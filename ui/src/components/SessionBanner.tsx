import { useState } from "react";
import type { SessionState } from "../bindings";
import { describeError, type Backend, type Result } from "../backend";

/** One line that says where the session stands, with the action that fits. */
export function SessionBanner({
  session,
  waitingForBrowser,
  backend,
}: {
  session: SessionState;
  waitingForBrowser: boolean;
  backend: Backend;
}) {
  const [error, setError] = useState<string | null>(null);

  const run = (action: () => Promise<Result<null>>) => async () => {
    setError(null);
    const result = await action();
    if (result.status === "error") setError(describeError(result.error));
  };

  const waiting = session.state === "signed_out" && waitingForBrowser;
  const starting = session.state === "connecting_to_portal" || session.state === "raising_tunnel";
  return (
    <section className="session" aria-live="polite">
      <span data-testid="session-state" className={`session-state ${session.state}`}>
        {waiting ? "Waiting for the browser…" : sessionText(session)}
      </span>
      {session.state === "signed_out" && !waiting && (
        <button type="button" className="primary" onClick={run(() => backend.signIn())}>
          Sign in…
        </button>
      )}
      {waiting && (
        <button type="button" onClick={run(() => backend.cancelSignIn())}>
          Cancel sign-in
        </button>
      )}
      {starting && (
        <button type="button" onClick={run(() => backend.signOut())}>
          Cancel sign-in
        </button>
      )}
      {(session.state === "signed_in" || session.state === "portal_reconnecting") && (
        <button type="button" onClick={run(() => backend.signOut())}>
          Sign out
        </button>
      )}
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
    </section>
  );
}

export function sessionText(session: SessionState): string {
  switch (session.state) {
    case "signed_out":
      return session.reason ? `Signed out: ${session.reason}` : "Signed out";
    case "connecting_to_portal":
      return "Connecting to the portal…";
    case "raising_tunnel":
      return "Raising the tunnel…";
    case "signed_in":
      return `Signed in as ${session.actor} (${session.account})`;
    case "portal_reconnecting":
      return `Reconnecting to the portal: ${session.reason}`;
  }
}
