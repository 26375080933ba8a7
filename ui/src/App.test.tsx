import { act, render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { App } from "./App";
import { FakeBackend, connected, serviceError, signedOutState } from "./fake-backend";
import { formatBytes } from "./pages/Resources";
import type { ResourceView } from "./bindings";

const notRunning = {
  service: { status: "not_running" as const, detail: "connection refused" },
  state: null,
  waiting_for_browser: false,
};

describe("App", () => {
  it("shows the not-running view and recovers when the service comes back", async () => {
    const backend = new FakeBackend(notRunning);
    render(<App backend={backend} />);
    expect(await screen.findByTestId("service-not-running")).toHaveTextContent(
      "Tunnel service is not running",
    );
    act(() => backend.emitView(connected()));
    expect(await screen.findByTestId("session-state")).toHaveTextContent("Signed out");
    expect(screen.queryByTestId("service-not-running")).not.toBeInTheDocument();
  });

  it("explains a missing group membership", async () => {
    render(
      <App
        backend={
          new FakeBackend({
            service: { status: "not_allowed", detail: "EACCES" },
            state: null,
            waiting_for_browser: false,
          })
        }
      />,
    );
    expect(await screen.findByTestId("service-not-allowed")).toHaveTextContent("log out and back in");
  });

  it("shows an honest empty state when there are no resources", async () => {
    render(<App backend={new FakeBackend(connected())} />);
    expect(await screen.findByTestId("resources-empty")).toBeInTheDocument();
  });

  it("lists resources with state, path, RTT and traffic", async () => {
    const state = signedOutState();
    state.session = { state: "signed_in", account: "acme", actor: "Ada" };
    state.resources = [
      {
        id: "r1",
        name: "Database",
        address: "db.corp.example",
        address_description: null,
        site: "Berlin",
        state: "active",
        reason: null,
        path: "direct",
        rtt_ms: 23,
        rx_bytes: 2048,
        tx_bytes: 10,
        enabled: null,
      },
    ];
    render(<App backend={new FakeBackend(connected(state))} />);
    const row = (await screen.findByText("Database")).closest("tr");
    expect(row).toHaveTextContent("db.corp.example");
    expect(row).toHaveTextContent("Active");
    expect(row).toHaveTextContent("23 ms");
    expect(row).toHaveTextContent("2.0 KiB");
    expect(screen.getByTestId("session-state")).toHaveTextContent("Signed in as Ada (acme)");
  });

  it("switches the internet resource through the service and shows what it reports", async () => {
    const state = signedOutState();
    state.session = { state: "signed_in", account: "acme", actor: "Ada" };
    const internet: ResourceView = {
      id: "res_internet",
      name: "Internet",
      address: "Internet",
      address_description: null,
      site: "Exit",
      state: "unknown",
      reason: null,
      path: null,
      rtt_ms: null,
      rx_bytes: 0,
      tx_bytes: 0,
      enabled: false,
    };
    state.resources = [internet];
    const backend = new FakeBackend(connected(state));
    render(<App backend={backend} />);
    const toggle = await screen.findByRole("switch", { name: /Send all traffic through Ember/ });
    expect(toggle).not.toBeChecked();
    await userEvent.click(toggle);
    expect(backend.switched).toEqual([["res_internet", true]]);
    act(() => backend.emitView(connected({ ...state, resources: [{ ...internet, enabled: true }] })));
    await waitFor(() => expect(toggle).toBeChecked());
  });

  it("asks for the window once the first view is drawn, on the page the tray asked for", async () => {
    const backend = new FakeBackend(connected());
    backend.askedPage = "settings";
    render(<App backend={backend} />);
    expect(await screen.findByRole("heading", { name: "Settings" })).toBeInTheDocument();
    expect(backend.readyCalls).toBe(1);
  });

  it("opens the settings page when the tray asks for it", async () => {
    const backend = new FakeBackend(connected());
    render(<App backend={backend} />);
    await screen.findByTestId("resources-empty");
    act(() => backend.emitNavigate("settings"));
    expect(await screen.findByLabelText("Portal URL")).toHaveValue("http://127.0.0.1:8080");
  });

  it("shows the sign-in steps with a way to cancel, then offers sign-out", async () => {
    const backend = new FakeBackend({ ...connected(), waiting_for_browser: true });
    render(<App backend={backend} />);
    expect(await screen.findByTestId("session-state")).toHaveTextContent("Waiting for the browser…");
    await userEvent.click(screen.getByRole("button", { name: "Cancel sign-in" }));
    expect(backend.calls).toEqual(["cancelSignIn"]);

    const raising = signedOutState();
    raising.session = { state: "raising_tunnel" };
    act(() => backend.emitView(connected(raising)));
    expect(await screen.findByTestId("session-state")).toHaveTextContent("Raising the tunnel…");

    const signedIn = signedOutState();
    signedIn.session = { state: "signed_in", account: "acme", actor: "Ada" };
    act(() => backend.emitView(connected(signedIn)));
    await userEvent.click(await screen.findByRole("button", { name: "Sign out" }));
    expect(backend.calls).toEqual(["cancelSignIn", "signOut"]);
  });

  it("shows why sign-in did not start", async () => {
    const backend = new FakeBackend(connected());
    backend.signInResult = { status: "error", error: { kind: "browser", detail: "no browser" } };
    render(<App backend={backend} />);
    await userEvent.click(await screen.findByRole("button", { name: "Sign in…" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Cannot open the browser: no browser");
  });
});

describe("Settings", () => {
  async function openSettings(backend: FakeBackend) {
    render(<App backend={backend} />);
    await userEvent.click(await screen.findByRole("button", { name: "Settings" }));
  }

  it("sends the edited settings to the service", async () => {
    const backend = new FakeBackend(connected());
    await openSettings(backend);
    const url = screen.getByLabelText("Portal URL");
    await userEvent.clear(url);
    await userEvent.type(url, "https://portal.example.com");
    await userEvent.selectOptions(screen.getByLabelText("Service log level"), "debug");
    await userEvent.click(screen.getByRole("button", { name: "Save" }));
    await waitFor(() => expect(screen.getByRole("status")).toHaveTextContent("Saved."));
    expect(backend.applied).toEqual([{ portal_url: "https://portal.example.com", log_filter: "debug" }]);
  });

  it("shows the service's validation error next to the form", async () => {
    const backend = new FakeBackend(connected());
    backend.applyResult = { status: "error", error: serviceError("portal_url", "a host is required") };
    await openSettings(backend);
    await userEvent.selectOptions(screen.getByLabelText("Service log level"), "warn");
    await userEvent.click(screen.getByRole("button", { name: "Save" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Portal URL: a host is required");
  });

  it("keeps Save disabled until something changed", async () => {
    await openSettings(new FakeBackend(connected()));
    expect(screen.getByRole("button", { name: "Save" })).toBeDisabled();
  });

  it("shows the settings read-only, and says who may change them, to a user who may not", async () => {
    const backend = new FakeBackend(connected(undefined, false));
    await openSettings(backend);
    expect(screen.getByLabelText("Portal URL")).toHaveAttribute("readonly");
    expect(screen.getByLabelText("Service log level")).toBeDisabled();
    expect(screen.queryByRole("button", { name: "Save" })).toBeNull();
    expect(screen.getByText(/Only an administrator can change them/)).toBeInTheDocument();
  });
});

function resource(id: string, name: string, state: ResourceView["state"]): ResourceView {
  return {
    id,
    name,
    address: `${name.toLowerCase()}.corp.example`,
    address_description: null,
    site: "Berlin",
    state,
    reason: null,
    path: null,
    rtt_ms: null,
    rx_bytes: 0,
    tx_bytes: 0,
    enabled: null,
  };
}

describe("Resources", () => {
  it("filters the list by name, address, site or state", async () => {
    const state = signedOutState();
    state.session = { state: "signed_in", account: "acme", actor: "Ada" };
    state.resources = [resource("r1", "Wiki", "idle"), resource("r2", "Database", "broken")];
    render(<App backend={new FakeBackend(connected(state))} />);
    const search = await screen.findByLabelText("Search resources");
    await userEvent.type(search, "broken");
    expect(screen.getByTestId("resource-r2")).toBeInTheDocument();
    expect(screen.queryByTestId("resource-r1")).not.toBeInTheDocument();
    await userEvent.clear(search);
    await userEvent.type(search, "nothing like this");
    expect(screen.getByText(/No resource matches/)).toBeInTheDocument();
  });
});

describe("Diagnostics", () => {
  it("exports the log bundle and says where it went, even without the service", async () => {
    const backend = new FakeBackend(notRunning);
    render(<App backend={backend} />);
    await userEvent.click(await screen.findByRole("button", { name: "Diagnostics" }));
    await userEvent.click(screen.getByRole("button", { name: "Export logs" }));
    expect(await screen.findByRole("status")).toHaveTextContent("ember-logs-20261125-221530.zip");
    await userEvent.click(screen.getByRole("button", { name: "Clear old logs" }));
    expect(await screen.findByRole("status")).toHaveTextContent("Removed 2 old log files.");
    expect(backend.calls).toEqual(["exportLogs", "clearLogs"]);
  });

  it("shows a failed export as an alert", async () => {
    const backend = new FakeBackend(connected());
    backend.exportResult = { status: "error", error: { kind: "local", detail: "disk full" } };
    render(<App backend={backend} />);
    await userEvent.click(await screen.findByRole("button", { name: "Diagnostics" }));
    await userEvent.click(screen.getByRole("button", { name: "Export logs" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("disk full");
  });
});

describe("Preferences", () => {
  it("saves a changed box at once", async () => {
    const backend = new FakeBackend(connected());
    render(<App backend={backend} />);
    await userEvent.click(await screen.findByRole("button", { name: "Settings" }));
    const box = await screen.findByLabelText("Sign in automatically when Ember starts");
    expect(box).toBeChecked();
    await userEvent.click(box);
    await waitFor(() => expect(backend.preferences.connect_on_start).toBe(false));
    expect(backend.calls).toEqual(["setPreferences"]);
  });
});

describe("Account", () => {
  it("shows the user, the account and the tunnel addresses", async () => {
    const state = signedOutState();
    state.session = { state: "signed_in", account: "acme", actor: "Ada" };
    state.interface = { name: "ember0", ipv4: "100.64.0.2", ipv6: null };
    render(<App backend={new FakeBackend(connected(state))} />);
    await userEvent.click(await screen.findByRole("button", { name: "Account" }));
    const details = screen.getByTestId("account-details");
    expect(details).toHaveTextContent("Ada");
    expect(details).toHaveTextContent("acme");
    expect(details).toHaveTextContent("100.64.0.2");
  });
});

describe("formatBytes", () => {
  it("uses binary units", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(5 * 1024 * 1024)).toBe("5.0 MiB");
  });
});
