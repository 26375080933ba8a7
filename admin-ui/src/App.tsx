import { useEffect, useState } from "react";
import { Api, ApiError, type Me, forgetToken, saveToken, savedToken } from "./api";
import { Users } from "./pages/Users";
import { Groups } from "./pages/Groups";
import { Sites } from "./pages/Sites";
import { Resources } from "./pages/Resources";
import { Policies } from "./pages/Policies";

const PAGES = ["Users", "Groups", "Sites", "Resources", "Policies"] as const;
type Page = (typeof PAGES)[number];

export function App() {
  const [session, setSession] = useState<{ api: Api; me: Me } | null>(null);
  const [checking, setChecking] = useState(() => savedToken() !== null);
  const [error, setError] = useState<string | null>(null);
  const [page, setPage] = useState<Page>("Resources");

  const signIn = (token: string) =>
    Api.signIn(token).then(
      (signedIn) => {
        saveToken(token);
        setSession(signedIn);
        setError(null);
        setChecking(false);
      },
      (e: unknown) => {
        forgetToken();
        setError(e instanceof ApiError && e.status === 401 ? "This token is not valid (unknown, revoked or expired)." : String(e instanceof Error ? e.message : e));
        setChecking(false);
      },
    );

  // A reload of the tab keeps the admin signed in (the token is in sessionStorage).
  useEffect(() => {
    const token = savedToken();
    if (token) void signIn(token);
  }, []);

  if (checking) return <p className="note">Signing in…</p>;
  if (!session) return <SignIn onSignIn={signIn} error={error} />;

  const signOut = () => {
    forgetToken();
    setSession(null);
  };
  return (
    <div className="app">
      <header>
        <h1>Ember admin</h1>
        <span data-testid="signed-in-as">
          {session.me.email} · {session.me.account}
        </span>
        <button onClick={signOut}>Sign out</button>
      </header>
      <nav>
        {PAGES.map((name) => (
          <button key={name} className={name === page ? "current" : ""} data-testid={`nav-${name.toLowerCase()}`} onClick={() => setPage(name)}>
            {name}
          </button>
        ))}
      </nav>
      <main>
        {page === "Users" && <Users api={session.api} />}
        {page === "Groups" && <Groups api={session.api} />}
        {page === "Sites" && <Sites api={session.api} />}
        {page === "Resources" && <Resources api={session.api} />}
        {page === "Policies" && <Policies api={session.api} />}
      </main>
    </div>
  );
}

function SignIn({ onSignIn, error }: { onSignIn: (token: string) => Promise<void>; error: string | null }) {
  const [token, setToken] = useState("");
  return (
    <form
      className="sign-in"
      onSubmit={(e) => {
        e.preventDefault();
        void onSignIn(token.trim());
      }}
    >
      <h1>Ember admin</h1>
      <label>
        Admin token
        <input type="password" autoComplete="off" name="token" data-testid="token" value={token} onChange={(e) => setToken(e.target.value)} />
      </label>
      <p className="note">
        Create one with <code>ember-portal admin token create-admin --account … --email …</code>. It is kept in this tab only.
      </p>
      <button type="submit" className="primary" disabled={!token.trim()}>
        Sign in
      </button>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
