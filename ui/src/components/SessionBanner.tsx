import { useState } from "react";
import type { SessionState } from "../bindings";
import { describeError, type Backend } from "../backend";

/** One line that says whether the user is signed in, with the action that fits. */
export function SessionBanner({ session, backend }: { session: SessionState; backend: Backend }) {
  const [error, setError] = useState<string | null>(null);

  const signIn = async () => {
    setError(null);
    const result = await backend.signIn();
    if (result.status === "error") setError(describeError(result.error));
  };

  return (
    <section className="session" aria-live="polite">
      <span data-testid="session-state" className={`session-state ${session.state}`}>
        {sessionText(session)}
      </span>
      {session.state === "signed_out" && (
        <button type="button" className="primary" onClick={signIn}>
          Sign in…
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
    case "signed_in":
      return `Signed in as ${session.actor} (${session.account})`;
    case "portal_reconnecting":
      return `Reconnecting to the portal: ${session.reason}`;
  }
}
