import { useEffect, useState } from "react";
import type { AppView, Page } from "./bindings";
import type { Backend } from "./backend";
import { ServiceUnavailable } from "./components/ServiceUnavailable";
import { SessionBanner } from "./components/SessionBanner";
import { ResourcesPage } from "./pages/Resources";
import { SettingsPage } from "./pages/Settings";
import { AccountPage } from "./pages/Account";
import { DiagnosticsPage } from "./pages/Diagnostics";

const PAGES: { page: Page; label: string }[] = [
  { page: "resources", label: "Resources" },
  { page: "account", label: "Account" },
  { page: "settings", label: "Settings" },
  { page: "diagnostics", label: "Diagnostics" },
];

export function App({ backend }: { backend: Backend }) {
  const [view, setView] = useState<AppView | null>(null);
  const [page, setPage] = useState<Page>("resources");

  useEffect(() => {
    let live = true;
    const stops: (() => void)[] = [];
    // Listen first, then fetch, so no change between the two is missed.
    void backend.onViewChanged((next) => live && setView(next)).then((stop) => stops.push(stop));
    void backend.onNavigate((next) => live && setPage(next)).then((stop) => stops.push(stop));
    void backend.getView().then((initial) => live && setView((current) => current ?? initial));
    return () => {
      live = false;
      stops.forEach((stop) => stop());
    };
  }, [backend]);

  // Effects run after the browser painted: the window appears with the first view in it, not
  // blank. The answer is the page the tray asked for while the window was being created.
  const drawn = view !== null;
  useEffect(() => {
    if (!drawn) return;
    void backend.windowReady().then((asked) => asked && setPage(asked));
  }, [drawn, backend]);

  if (view === null) {
    return <main className="centered" aria-busy="true">Starting…</main>;
  }

  return (
    <div className="app">
      <nav className="sidebar" aria-label="Main">
        <div className="brand">Ember</div>
        {PAGES.map(({ page: target, label }) => (
          <button
            key={target}
            type="button"
            className="nav-item"
            data-testid={`nav-${target}`}
            aria-current={page === target ? "page" : undefined}
            onClick={() => setPage(target)}
          >
            {label}
          </button>
        ))}
      </nav>
      <main className="content">
        {page === "diagnostics" ? (
          <DiagnosticsPage state={view.state} backend={backend} />
        ) : view.service.status === "connected" && view.state !== null ? (
          <>
            <SessionBanner
              session={view.state.session}
              waitingForBrowser={view.waiting_for_browser}
              backend={backend}
            />
            {page === "resources" && <ResourcesPage resources={view.state.resources} backend={backend} />}
            {page === "account" && <AccountPage state={view.state} />}
            {page === "settings" && (
              <SettingsPage
                settings={view.state.settings}
                mayChange={view.service.may_change_settings}
                backend={backend}
              />
            )}
          </>
        ) : (
          <ServiceUnavailable status={view.service} />
        )}
      </main>
    </div>
  );
}
