// A typed stand-in for the Rust side, for page tests.
import type { AppError, AppPreferences, AppView, Page, ServiceSettings, ViewState } from "./bindings";
import type { Backend, Result } from "./backend";

export const SETTINGS: ServiceSettings = { portal_url: "http://127.0.0.1:8080", log_filter: "info" };

export function signedOutState(): ViewState {
  return {
    session: { state: "signed_out", reason: null },
    interface: null,
    resources: [],
    settings: SETTINGS,
  };
}

export function connected(state: ViewState = signedOutState(), mayChangeSettings = true): AppView {
  return {
    service: { status: "connected", service_version: "0.1.0", may_change_settings: mayChangeSettings },
    state,
    waiting_for_browser: false,
  };
}

export class FakeBackend implements Backend {
  view: AppView;
  applied: ServiceSettings[] = [];
  applyResult: Result<null> = { status: "ok", data: null };
  signInResult: Result<null> = { status: "ok", data: null };
  calls: string[] = [];
  preferences: AppPreferences = { start_on_login: true, start_minimised: true, connect_on_start: true };
  exportResult: Result<string> = { status: "ok", data: "/home/ada/Downloads/ember-logs-20261125-221530.zip" };
  /** What `windowReady` answers, and how often it was called. */
  askedPage: Page | null = null;
  readyCalls = 0;
  private viewListeners: ((view: AppView) => void)[] = [];
  private pageListeners: ((page: Page) => void)[] = [];

  constructor(view: AppView) {
    this.view = view;
  }

  async getView() {
    return this.view;
  }
  switched: [string, boolean][] = [];
  async setResourceEnabled(resourceId: string, enabled: boolean): Promise<Result<null>> {
    this.switched.push([resourceId, enabled]);
    return { status: "ok", data: null };
  }
  async windowReady() {
    this.readyCalls += 1;
    const page = this.askedPage;
    this.askedPage = null;
    return page;
  }
  async applySettings(settings: ServiceSettings) {
    this.applied.push(settings);
    return this.applyResult;
  }
  async signIn() {
    this.calls.push("signIn");
    return this.signInResult;
  }
  async cancelSignIn() {
    this.calls.push("cancelSignIn");
    return { status: "ok" as const, data: null };
  }
  async getPreferences() {
    return this.preferences;
  }
  async setPreferences(preferences: AppPreferences) {
    this.calls.push("setPreferences");
    this.preferences = preferences;
    return { status: "ok" as const, data: null };
  }
  async exportLogs() {
    this.calls.push("exportLogs");
    return this.exportResult;
  }
  async clearLogs() {
    this.calls.push("clearLogs");
    return { status: "ok" as const, data: 2 };
  }
  async signOut() {
    this.calls.push("signOut");
    return { status: "ok" as const, data: null };
  }
  async onViewChanged(onView: (view: AppView) => void) {
    this.viewListeners.push(onView);
    return () => {
      this.viewListeners = this.viewListeners.filter((l) => l !== onView);
    };
  }
  async onNavigate(onPage: (page: Page) => void) {
    this.pageListeners.push(onPage);
    return () => {
      this.pageListeners = this.pageListeners.filter((l) => l !== onPage);
    };
  }

  /** What the Rust side does when the view changes. */
  emitView(view: AppView) {
    this.view = view;
    this.viewListeners.forEach((l) => l(view));
  }
  emitNavigate(page: Page) {
    this.pageListeners.forEach((l) => l(page));
  }
}

export function serviceError(field: string, reason: string): AppError {
  return { kind: "service", error: { code: "invalid_settings", field, reason } };
}
