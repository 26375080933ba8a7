import { useEffect, useState, type FormEvent } from "react";
import type { AppPreferences, ServiceSettings } from "../bindings";
import { describeError, type Backend } from "../backend";

const LOG_LEVELS = ["error", "warn", "info", "debug", "trace"];

/**
 * The settings the tunnel service owns; it validates them before saving. They are the same for
 * every user of this computer, so only an administrator may change them (`mayChange`); everyone
 * else sees them read-only, with a line that says so.
 */
export function SettingsPage({
  settings,
  mayChange,
  backend,
}: {
  settings: ServiceSettings;
  mayChange: boolean;
  backend: Backend;
}) {
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
        {!mayChange && (
          <p id="settings-admin-only" className="note">
            These settings apply to everyone on this computer. Only an administrator can change them.
          </p>
        )}
        <label htmlFor="portal-url">Portal URL</label>
        <input
          id="portal-url"
          type="url"
          required
          readOnly={!mayChange}
          aria-describedby={mayChange ? undefined : "settings-admin-only"}
          value={draft.portal_url}
          onChange={(e) => setDraft({ ...draft, portal_url: e.target.value })}
        />
        <label htmlFor="log-filter">Service log level</label>
        <select
          id="log-filter"
          disabled={!mayChange}
          aria-describedby={mayChange ? undefined : "settings-admin-only"}
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
        {mayChange && (
          <div className="actions">
            <button type="submit" className="primary" disabled={!changed || saving}>
              {saving ? "Saving…" : "Save"}
            </button>
            <button type="button" disabled={!changed || saving} onClick={() => setDraft(settings)}>
              Reset
            </button>
          </div>
        )}
        {message && (
          <p role={message.kind === "error" ? "alert" : "status"} className={message.kind}>
            {message.text}
          </p>
        )}
      </form>
      <AppPreferencesForm backend={backend} />
    </section>
  );
}

const PREFERENCE_LABELS: { key: keyof AppPreferences; label: string }[] = [
  { key: "start_on_login", label: "Start Ember when I log in" },
  { key: "start_minimised", label: "Stay in the tray when started at login" },
  { key: "connect_on_start", label: "Sign in automatically when Ember starts" },
];

/** What this app keeps for the user; saved as soon as a box changes. */
function AppPreferencesForm({ backend }: { backend: Backend }) {
  const [preferences, setPreferences] = useState<AppPreferences | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    void backend.getPreferences().then((loaded) => live && setPreferences(loaded));
    return () => {
      live = false;
    };
  }, [backend]);

  if (preferences === null) return null;
  const toggle = async (key: keyof AppPreferences, value: boolean) => {
    const next = { ...preferences, [key]: value };
    setPreferences(next);
    setError(null);
    const result = await backend.setPreferences(next);
    if (result.status === "error") setError(describeError(result.error));
  };
  return (
    <fieldset className="preferences">
      <legend>This computer</legend>
      {PREFERENCE_LABELS.map(({ key, label }) => (
        <label key={key} className="checkbox">
          <input
            type="checkbox"
            checked={preferences[key]}
            onChange={(e) => void toggle(key, e.target.checked)}
          />
          {label}
        </label>
      ))}
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
    </fieldset>
  );
}
