import { useState, type FormEvent } from "react";
import type { ServiceSettings } from "../bindings";
import { describeError, type Backend } from "../backend";

const LOG_LEVELS = ["error", "warn", "info", "debug", "trace"];

/** The settings the tunnel service owns; it validates them before saving. */
export function SettingsPage({ settings, backend }: { settings: ServiceSettings; backend: Backend }) {
  const [draft, setDraft] = useState(settings);
  const [message, setMessage] = useState<{ kind: "saved" | "error"; text: string } | null>(null);
  const [saving, setSaving] = useState(false);

  const save = async (event: FormEvent) => {
    event.preventDefault();
    setSaving(true);
    setMessage(null);
    const result = await backend.applySettings(draft);
    setSaving(false);
    setMessage(
      result.status === "ok"
        ? { kind: "saved", text: "Saved." }
        : { kind: "error", text: describeError(result.error) },
    );
  };

  const changed = draft.portal_url !== settings.portal_url || draft.log_filter !== settings.log_filter;
  const customFilter = !LOG_LEVELS.includes(draft.log_filter);

  return (
    <section aria-labelledby="settings-heading">
      <h1 id="settings-heading">Settings</h1>
      <form className="settings" onSubmit={save}>
        <label htmlFor="portal-url">Portal URL</label>
        <input
          id="portal-url"
          type="url"
          required
          value={draft.portal_url}
          onChange={(e) => setDraft({ ...draft, portal_url: e.target.value })}
        />
        <label htmlFor="log-filter">Service log level</label>
        <select
          id="log-filter"
          value={draft.log_filter}
          onChange={(e) => setDraft({ ...draft, log_filter: e.target.value })}
        >
          {customFilter && <option value={draft.log_filter}>{draft.log_filter}</option>}
          {LOG_LEVELS.map((level) => (
            <option key={level} value={level}>
              {level}
            </option>
          ))}
        </select>
        <div className="actions">
          <button type="submit" className="primary" disabled={!changed || saving}>
            {saving ? "Saving…" : "Save"}
          </button>
          <button type="button" disabled={!changed || saving} onClick={() => setDraft(settings)}>
            Reset
          </button>
        </div>
        {message && (
          <p role={message.kind === "error" ? "alert" : "status"} className={message.kind}>
            {message.text}
          </p>
        )}
      </form>
    </section>
  );
}
