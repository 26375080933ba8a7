import type { SessionState, ViewState } from "../bindings";
import { sessionText } from "../components/SessionBanner";

/** Who is signed in, to which portal, with which tunnel addresses. */
export function AccountPage({ state }: { state: ViewState }) {
  const signedIn: Extract<SessionState, { state: "signed_in" }> | null =
    state.session.state === "signed_in" ? state.session : null;
  return (
    <section aria-labelledby="account-heading">
      <h1 id="account-heading">Account</h1>
      <dl className="details" data-testid="account-details">
        <dt>Status</dt>
        <dd>{sessionText(state.session)}</dd>
        {signedIn && (
          <>
            <dt>User</dt>
            <dd>{signedIn.actor}</dd>
            <dt>Account</dt>
            <dd>{signedIn.account}</dd>
          </>
        )}
        <dt>Portal</dt>
        <dd>{state.settings.portal_url}</dd>
        {state.interface && (
          <>
            <dt>Tunnel addresses</dt>
            <dd>{[state.interface.ipv4, state.interface.ipv6].filter((a) => a !== null).join(", ")}</dd>
          </>
        )}
      </dl>
    </section>
  );
}
