// The app's only way to reach Rust: the generated bindings behind a small interface, so the
// pages can be tested against typed fake data.
import { commands, events } from "./bindings";
import type { AppError, AppPreferences, AppView, Page, ServiceSettings } from "./bindings";

export type Result<T> = { status: "ok"; data: T } | { status: "error"; error: AppError };

export interface Backend {
  getView(): Promise<AppView>;
  /** Tells the app the first view is drawn, so it shows the window; answers the page the
   * user asked for (the tray's "Settings"), if any. */
  windowReady(): Promise<Page | null>;
  applySettings(settings: ServiceSettings): Promise<Result<null>>;
  setResourceEnabled(resourceId: string, enabled: boolean): Promise<Result<null>>;
  signIn(): Promise<Result<null>>;
  cancelSignIn(): Promise<Result<null>>;
  signOut(): Promise<Result<null>>;
  getPreferences(): Promise<AppPreferences>;
  setPreferences(preferences: AppPreferences): Promise<Result<null>>;
  /** Writes the diagnostics bundle; answers its path. */
  exportLogs(): Promise<Result<string>>;
  clearLogs(): Promise<Result<number>>;
  /** Calls `onView` on every change; returns a function that stops listening. */
  onViewChanged(onView: (view: AppView) => void): Promise<() => void>;
  onNavigate(onPage: (page: Page) => void): Promise<() => void>;
}

export const tauriBackend: Backend = {
  getView: () => commands.getView(),
  windowReady: () => commands.windowReady(),
  applySettings: (settings) => commands.applySettings(settings),
  setResourceEnabled: (resourceId, enabled) => commands.setResourceEnabled(resourceId, enabled),
  signIn: () => commands.signIn(),
  cancelSignIn: () => commands.cancelSignIn(),
  signOut: () => commands.signOut(),
  getPreferences: () => commands.getPreferences(),
  setPreferences: (preferences) => commands.setPreferences(preferences),
  exportLogs: () => commands.exportLogs(),
  clearLogs: () => commands.clearLogs(),
  onViewChanged: (onView) => events.viewChanged.listen((event) => onView(event.payload)),
  onNavigate: (onPage) => events.navigate.listen((event) => onPage(event.payload)),
};

export function describeError(error: AppError): string {
  switch (error.kind) {
    case "service_unavailable":
      return `The tunnel service is not reachable: ${error.detail}`;
    case "browser":
      return `Cannot open the browser: ${error.detail}`;
    case "local":
      return error.detail;
    case "service":
      switch (error.error.code) {
        case "invalid_settings":
          return `${fieldLabel(error.error.field)}: ${error.error.reason}`;
        case "not_available_yet":
          return `${error.error.what} is not available in this version yet.`;
        case "unknown_resource":
          return `Unknown resource ${error.error.resource_id}.`;
        case "forbidden":
          return `Only ${error.error.who} may change ${error.error.what}.`;
        case "sign_in_refused":
          return `The portal refused the sign-in: ${error.error.message}`;
        case "wrong_portal":
          return `Your sign-in belongs to ${error.error.token_portal}, but this computer now uses ${error.error.portal_url}. Sign in again.`;
        case "internal":
          return `The tunnel service failed: ${error.error.message}`;
      }
  }
}

function fieldLabel(field: string): string {
  switch (field) {
    case "portal_url":
      return "Portal URL";
    case "log_filter":
      return "Log level";
    default:
      return field;
  }
}
