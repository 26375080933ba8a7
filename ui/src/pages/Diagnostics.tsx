import { useState } from "react";
import type { ViewState } from "../bindings";
import { describeError, type Backend } from "../backend";
import { formatBytes } from "./Resources";

/** Log export for support, the connection details behind it, and a way to clear old logs. */
export function DiagnosticsPage({ state, backend }: { state: ViewState | null; backend: Backend }) {
  const [message, setMessage] = useState<{ kind: "ok" | "error"; text: string } | null>(null);
  const [busy, setBusy] = useState(false);

  const exportLogs = async () => {
    setBusy(true);
    setMessage(null);
    const result = await backend.exportLogs();
    setBusy(false);
    setMessage(
      result.status === "ok"
        ? { kind: "ok", text: `Saved ${result.data}` }
        : { kind: "error", text: describeError(result.error) },
    );
  };
  const clearLogs = async () => {
    setMessage(null);
    const result = await backend.clearLogs();
    setMessage(
      result.status === "ok"
        ? { kind: "ok", text: `Removed ${result.data} old log file${result.data === 1 ? "" : "s"}.` }
        : { kind: "error", text: describeError(result.error) },
    );
  };

  return (
    <section aria-labelledby="diagnostics-heading">
      <h1 id="diagnostics-heading">Diagnostics</h1>
      <p>
        The log bundle holds the app&apos;s and the tunnel service&apos;s logs and the connection
        details below, in one zip file. It contains no passwords or tokens.
      </p>
      <div className="actions">
        <button type="button" className="primary" disabled={busy} onClick={exportLogs}>
          {busy ? "Exporting…" : "Export logs"}
        </button>
        <button type="button" onClick={clearLogs}>
          Clear old logs
        </button>
      </div>
      {message && (
        <p role={message.kind === "error" ? "alert" : "status"} className={message.kind}>
          {message.text}
        </p>
      )}
      <h2>Connection details</h2>
      {state === null ? (
        <p className="empty">Not connected to the tunnel service.</p>
      ) : (
        <dl className="details" data-testid="connection-details">
          <dt>Portal</dt>
          <dd>{state.settings.portal_url}</dd>
          <dt>Tunnel interface</dt>
          <dd>
            {state.interface
              ? [state.interface.name, state.interface.ipv4, state.interface.ipv6]
                  .filter((part) => part !== null)
                  .join(" · ")
              : "—"}
          </dd>
          <dt>Resources</dt>
          <dd>{state.resources.length}</dd>
          <dt>Traffic</dt>
          <dd>
            ↓ {formatBytes(state.resources.reduce((sum, r) => sum + r.rx_bytes, 0))} ↑{" "}
            {formatBytes(state.resources.reduce((sum, r) => sum + r.tx_bytes, 0))}
          </dd>
        </dl>
      )}
    </section>
  );
}
