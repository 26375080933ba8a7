#!/usr/bin/env python3
"""Reads Ember's built MSI back and checks what Windows Installer would do with it.

Usage: msi.py MSI

The MSI is read with msitools (`msiinfo`, `msiextract`); the ember-tunnel.exe it carries is run
under wine (WINEDEBUG=-all, WINEPREFIX from EMBER_WINEPREFIX or a cache folder) to learn which
subcommands it accepts. Checks: the service's install row (name, account, start type, and
arguments that the shipped ember-tunnel.exe accepts), its control and recovery rows, every file
in the File, Component and FeatureComponents tables and in the embedded cabinet (wintun.dll
matching the pin), the ember:// handler, Start-menu entry and autostart rows when the tray app
is in it, and the silent-install properties; then wine's msiexec installs it silently in a
throwaway prefix (the service must start) and removes it again (EMBER_MSI_WINE_INSTALL=0 skips
that). Prints the MSI's size and the tables checked; the
last line is "N passed, N failed, N skipped".
"""

import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
HKLM = "2"
COMPONENT_64BIT = 256
# ServiceControl events: start on install, stop on install and uninstall, delete on uninstall.
SERVICE_CONTROL_EVENTS = 1 | 2 | 32 | 128
SERVICE_OWN_PROCESS = "16"
SERVICE_AUTO_START = "2"
ERROR_CONTROL_NORMAL = "1"
SC_ACTION_RESTART = "1"
SERVICE_CONFIG_FAILURE_ACTIONS_FLAG = "4"
MSI_SERVICE_EVENT_INSTALL_AND_REINSTALL = "5"

passed = failed = skipped = 0
tables_checked = []


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok - {name}")
    else:
        failed += 1
        print(f"FAIL - {name}" + (f": {detail}" if detail else ""))


def skip(name, why):
    global skipped
    skipped += 1
    print(f"skip - {name}: {why}")


def run(*args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


def table(msi, name):
    """The rows of table `name` as dicts by column name; [] when the MSI has no such table."""
    result = run("msiinfo", "export", msi, name)
    if result.returncode != 0:
        return []
    lines = result.stdout.replace("\r", "").split("\n")
    columns = lines[0].split("\t")
    rows = [dict(zip(columns, line.split("\t"))) for line in lines[3:] if line]
    tables_checked.append(f"{name} ({len(rows)} rows)")
    return rows


def one(rows, **match):
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    return found[0] if len(found) == 1 else None


def wine_env(prefix):
    return dict(os.environ, WINEDEBUG="-all", WINEPREFIX=str(prefix), WINEDLLOVERRIDES="mscoree,mshtml=")


def base_prefix():
    """The test's wine prefix, made on first use, with the DLL wine 8.0 lacks (scripts/cross/wine/)."""
    prefix = pathlib.Path(os.environ.get("EMBER_WINEPREFIX", "/var/cache/ember/wineprefix-msi"))
    system32 = prefix / "drive_c/windows/system32"
    if not system32.is_dir():
        subprocess.run(["wine", "wineboot", "--init"], capture_output=True, env=wine_env(prefix), timeout=300, check=True)
        subprocess.run(["wineserver", "--wait"], env=wine_env(prefix), timeout=300, check=False)
    shim = system32 / "bcryptprimitives.dll"
    if not shim.exists():
        subprocess.run(["x86_64-w64-mingw32-gcc", "-O2", "-shared", "-s", "-o", str(shim),
                        str(ROOT / "scripts/cross/wine/bcryptprimitives.c"), "-ladvapi32"], check=True)
    return prefix


def wine(exe, *args, prefix=None):
    env = wine_env(prefix or base_prefix())
    return subprocess.run(["wine", exe, *args], capture_output=True, text=True, env=env, timeout=300)


def windows_path(path):
    return "Z:" + str(pathlib.Path(path).resolve()).replace("/", "\\")


def reg_query(prefix, key, value=None):
    args = ["reg", "query", key] + (["/v", value] if value else [])
    result = wine(*args, prefix=prefix)
    return result.stdout if result.returncode == 0 else None


WEBVIEW2_KEY = "HKLM\\SOFTWARE\\Microsoft\\EdgeUpdate\\Clients\\{F3017226-FE2A-4295-8BDF-00C3A9A7E4C5}"


def install_under_wine(msi, with_app):
    """msiexec /qn in a throwaway copy of the prefix: files, settings, the registered service
    (StartServices waits for it to start, or the whole installation rolls back), then /x.
    With the tray app the MSI needs the WebView2 runtime: refused without it, then installed
    once the prefix says it has one (wine cannot run Edge's runtime itself)."""
    if os.environ.get("EMBER_MSI_WINE_INSTALL") == "0":
        skip("install and uninstall under wine's msiexec", "EMBER_MSI_WINE_INSTALL=0")
        return
    with tempfile.TemporaryDirectory() as tmp:
        prefix = pathlib.Path(tmp, "prefix")
        shutil.copytree(base_prefix(), prefix, symlinks=True)
        log = pathlib.Path(tmp, "install.log")
        try:
            if with_app:
                refused = wine("msiexec", "/i", windows_path(msi), "/qn",
                               "PORTAL_URL=https://portal.example.com", prefix=prefix)
                check("without the WebView2 runtime the installation is refused",
                      refused.returncode != 0 and not (prefix / "drive_c/Program Files/Ember").exists(),
                      f"exit {refused.returncode}")
                # Both registry views: Edge's updater writes the 32-bit one on 64-bit Windows.
                for view in ("/reg:32", "/reg:64"):
                    added = wine("reg", "add", WEBVIEW2_KEY, "/v", "pv", "/d", "131.0.2903.70",
                                 "/f", view, prefix=prefix)
                    if added.returncode != 0:
                        check("the prefix could be told WebView2 is installed", False, added.stderr)
                        return
            installed = wine("msiexec", "/i", windows_path(msi), "/qn", "/l*v", windows_path(log),
                             "PORTAL_URL=https://portal.example.com", "ACCOUNT=acme", prefix=prefix)
            text = log.read_text(errors="replace") if log.exists() else ""
            failed_actions = [l for l in text.splitlines() if re.search(r"Return value [03]\.$", l)
                              and "MigrateFeatureStates" not in l and "MsiConfigureServices" not in l]
            only_start_failed = (installed.returncode != 0 and failed_actions
                                 and "StartServices" in failed_actions[0]
                                 and "InstallServices. Return value 1." in text)
            if only_start_failed:
                # Wine reports the Unix user as the owner of every file, so the service (rightly)
                # refuses C:\ProgramData\Ember as "not owned by SYSTEM or the administrators"
                # and exits; StartServices then rolls the installation back, as Windows would.
                skip("the service starting under wine's service manager",
                     "wine reports the Unix user as every folder's owner; the service refuses "
                     "C:\\ProgramData\\Ember for it (run `ember-tunnel.exe run` under wine to see it)")
                folder = prefix / "drive_c/Program Files/Ember"
                check("everything up to StartServices succeeded: files, registry, the service registered",
                      all(f"{action}. Return value 1." in text for action in
                          ("InstallFiles", "WriteRegistryValues", "InstallServices")), failed_actions)
                check("the failed service start rolled the whole installation back",
                      not (folder / "ember-tunnel.exe").exists()
                      and reg_query(prefix, "HKLM\\System\\CurrentControlSet\\Services\\EmberTunnel") is None)
                return
            check("wine msiexec /i /qn installs it (StartServices waits for the service to start)",
                  installed.returncode == 0, f"exit {installed.returncode}; failed actions: {failed_actions}")
            if installed.returncode != 0:
                return
            folder = prefix / "drive_c/Program Files/Ember"
            check("installed: ember-tunnel.exe and wintun.dll in C:\\Program Files\\Ember",
                  (folder / "ember-tunnel.exe").is_file() and (folder / "wintun.dll").is_file())
            if with_app:
                command = reg_query(prefix, "HKLM\\SOFTWARE\\Classes\\ember\\shell\\open\\command") or ""
                check("installed: ember.exe, WebView2Loader.dll and the ember:// handler",
                      (folder / "ember.exe").is_file() and (folder / "WebView2Loader.dll").is_file()
                      and "ember.exe" in command and "%1" in command, command)
            settings = reg_query(prefix, "HKLM\\SOFTWARE\\Ember") or ""
            check("installed: PORTAL_URL and ACCOUNT in HKLM\\SOFTWARE\\Ember",
                  "https://portal.example.com" in settings and "acme" in settings, settings)
            service = reg_query(prefix, "HKLM\\System\\CurrentControlSet\\Services\\EmberTunnel") or ""
            check("installed: service EmberTunnel runs `ember-tunnel.exe service`, auto start, LocalSystem",
                  re.search(r'ember-tunnel\.exe"? service', service) is not None
                  and re.search(r"Start\s+REG_DWORD\s+0x2\b", service) is not None and "LocalSystem" in service,
                  service)
            removed = wine("msiexec", "/x", windows_path(msi), "/qn", prefix=prefix)
            check("wine msiexec /x removes the files, the service and the settings",
                  removed.returncode == 0 and not (folder / "ember-tunnel.exe").exists()
                  and reg_query(prefix, "HKLM\\System\\CurrentControlSet\\Services\\EmberTunnel") is None
                  and "PortalUrl" not in (reg_query(prefix, "HKLM\\SOFTWARE\\Ember") or ""),
                  f"exit {removed.returncode}")
        finally:
            subprocess.run(["wineserver", "-k"], env=wine_env(prefix), check=False)


def subcommands(help_text):
    """The subcommand names in clap's `--help` ("Commands:" section)."""
    names, inside = [], False
    for line in help_text.splitlines():
        if line.strip() == "Commands:":
            inside = True
        elif inside and not line.startswith("  "):
            break
        elif inside and (match := re.match(r"^  (\S+)", line)):
            names.append(match.group(1))
    return names


def main(msi):
    size = os.path.getsize(msi)
    print(f"# {msi}: {size} bytes ({size / 1_048_576:.1f} MiB)")
    tables = run("msiinfo", "tables", msi).stdout.split()

    files = table(msi, "File")
    components = table(msi, "Component")
    features = table(msi, "FeatureComponents")
    registry = table(msi, "Registry")
    services = table(msi, "ServiceInstall")
    controls = table(msi, "ServiceControl")
    failure_actions = table(msi, "MsiServiceConfigFailureActions")
    service_config = table(msi, "MsiServiceConfig")
    sequence = table(msi, "InstallExecuteSequence")
    properties = {r["Property"]: r["Value"] for r in table(msi, "Property")}
    shortcuts = table(msi, "Shortcut")
    custom_actions = table(msi, "CustomAction")
    app_search = table(msi, "AppSearch")
    locators = table(msi, "RegLocator")
    upgrades = table(msi, "Upgrade")
    order = {r["Action"]: int(r["Sequence"]) for r in sequence}
    with_app = any(f["FileName"].endswith("ember.exe") and "tunnel" not in f["FileName"] for f in files)

    # Every file: in the File table, in a 64-bit component of the install folder whose key it
    # is, in the feature, and in the embedded cabinet with the size the File table says.
    with tempfile.TemporaryDirectory() as extracted:
        extract = run("msiextract", "-C", extracted, msi)
        check("msiextract unpacks the embedded cabinet", extract.returncode == 0, extract.stderr)
        expected = ["ember-tunnel.exe", "wintun.dll"] + (
            ["ember.exe", "WebView2Loader.dll"] if with_app else [])
        for name in expected:
            row = next((f for f in files if f["FileName"].split("|")[-1] == name), None)
            component = row and one(components, Component=row["Component_"])
            on_disk = pathlib.Path(extracted, "Ember", name)
            check(f"{name}: a File row in a component of its own (the component's key path)",
                  component is not None and component["KeyPath"] == row["File"], f"{row} {component}")
            check(f"{name}: installed to Program Files\\Ember, 64-bit component",
                  component is not None and component["Directory_"] == "INSTALLFOLDER"
                  and int(component["Attributes"]) & COMPONENT_64BIT, str(component))
            check(f"{name}: its component is in the feature",
                  component is not None and any(f["Component_"] == component["Component"] for f in features))
            check(f"{name}: in the cabinet with the File table's size",
                  on_disk.is_file() and row is not None and on_disk.stat().st_size == int(row["FileSize"]),
                  f"{on_disk} {row}")
        check("no other files", sorted(f["FileName"].split("|")[-1] for f in files) == sorted(expected),
              str([f["FileName"] for f in files]))
        dll = pathlib.Path(extracted, "Ember", "wintun.dll")
        pin = (ROOT / "installer/windows/wintun.sha256").read_text().split()[0]
        check("wintun.dll matches installer/windows/wintun.sha256",
              dll.is_file() and hashlib.sha256(dll.read_bytes()).hexdigest() == pin)
        tunnel_component = next((f["Component_"] for f in files if f["FileName"].endswith("ember-tunnel.exe")), None)

        # The service: what the SCM will run, and that the shipped binary accepts it.
        service = one(services, Name="EmberTunnel")
        check("ServiceInstall: EmberTunnel, own process, automatic start, LocalSystem, normal errors",
              service is not None and service["ServiceType"] == SERVICE_OWN_PROCESS
              and service["StartType"] == SERVICE_AUTO_START and service["StartName"] == "LocalSystem"
              and service["ErrorControl"] == ERROR_CONTROL_NORMAL and not service.get("Password"), str(service))
        check("ServiceInstall: in ember-tunnel.exe's component (the SCM runs that file)",
              service is not None and service["Component_"] == tunnel_component, str(service))
        arguments = (service or {}).get("Arguments", "").split()
        tunnel_exe = pathlib.Path(extracted, "Ember", "ember-tunnel.exe")
        help_run = wine(str(tunnel_exe), "--help")
        listed = subcommands(help_run.stdout)
        print(f"# ember-tunnel.exe --help (wine) lists: {' '.join(listed) or '(nothing)'}")
        check("ember-tunnel.exe --help runs under wine", help_run.returncode == 0,
              (help_run.stdout + help_run.stderr)[-2000:])
        check(f"ServiceInstall arguments {' '.join(arguments)!r} name a subcommand ember-tunnel.exe lists",
              bool(arguments) and arguments[0] in listed, f"lists {listed}")
        sub_help = wine(str(tunnel_exe), *arguments, "--help")
        check(f"ember-tunnel.exe accepts `{' '.join(arguments)}` (its --help exits 0 under wine)",
              bool(arguments) and sub_help.returncode == 0, (sub_help.stdout + sub_help.stderr)[-2000:])

    control = one(controls, Name="EmberTunnel")
    check("ServiceControl: started on install, stopped on install and uninstall, deleted on uninstall, waited for",
          control is not None and int(control["Event"]) == SERVICE_CONTROL_EVENTS and control["Wait"] == "1"
          and control["Component_"] == tunnel_component, str(control))
    restart = one(failure_actions, Name="EmberTunnel")
    check("recovery: restarted 2 s after each of three failures, count reset after a day",
          restart is not None and restart["Actions"] == "[~]".join([SC_ACTION_RESTART] * 3)
          and restart["DelayActions"] == "2000[~]2000[~]2000" and restart["ResetPeriod"] == "86400"
          and restart["Event"] == MSI_SERVICE_EVENT_INSTALL_AND_REINSTALL
          and restart["Component_"] == tunnel_component, str(restart))
    flag = one(service_config, Name="EmberTunnel")
    check("recovery also when the service stops with an error (failure-actions flag)",
          flag is not None and flag["ConfigType"] == SERVICE_CONFIG_FAILURE_ACTIONS_FLAG and flag["Argument"] == "1",
          str(flag))
    check("MsiConfigureServices runs between InstallServices and StartServices",
          order.get("InstallServices", 1 << 30) < order.get("MsiConfigureServices", -1) < order.get("StartServices", -1),
          str({k: order.get(k) for k in ("InstallServices", "MsiConfigureServices", "StartServices")}))
    check("an upgrade removes the old product (its service) right after InstallValidate",
          order.get("InstallValidate", 1 << 30) < order.get("RemoveExistingProducts", -1) < order.get("InstallInitialize", -1)
          and any(u["ActionProperty"] == "WIX_UPGRADE_DETECTED" for u in upgrades), str(upgrades))
    check("per-machine, x64 package", properties.get("ALLUSERS") == "1"
          and "x64" in run("msiinfo", "suminfo", msi).stdout)

    # Silent install: msiexec /qn PORTAL_URL=… ACCOUNT=… lands where the service reads it, and
    # an upgrade without them keeps what it finds there.
    secure = properties.get("SecureCustomProperties", "").split(";")
    for prop, name in (("PORTAL_URL", "PortalUrl"), ("ACCOUNT", "Account")):
        value = one(registry, Root=HKLM, Key="SOFTWARE\\Ember", Name=name)
        check(f"{prop}: written to HKLM\\SOFTWARE\\Ember {name}",
              value is not None and value["Value"] == f"[{prop}]", str(value))
        check(f"{prop}: a secure property (passed to the elevated install)", prop in secure, str(secure))
        search = next((a for a in app_search if a["Property"] == f"SAVED_{prop}"), None)
        locator = search and one(locators, Signature_=search["Signature_"])
        keep = one(custom_actions, Source=prop)
        check(f"{prop}: an upgrade without it keeps the value it finds",
              locator is not None and locator["Key"] == "SOFTWARE\\Ember" and locator["Name"] == name
              and keep is not None and keep["Target"] == f"[SAVED_{prop}]"
              and order.get("AppSearch", 1 << 30) < order.get(keep["Action"], -1) < order.get("CostFinalize", -1),
              f"{locator} {keep}")

    # The tray app's part: the ember:// handler, the Start menu, autostart.
    app_rows = [r for r in registry if "[#EmberExe]" in r["Value"]] + [s for s in shortcuts if "[#EmberExe]" in s["Target"]]
    if not with_app:
        for what in ("ember:// handler", "Start-menu entry", "autostart at sign-in"):
            skip(what, "this MSI was built without the tray app (no EMBER_APP_EXE)")
        check("without the tray app nothing points at it", app_rows == [], str(app_rows))
    else:
        app_component = next(f["Component_"] for f in files if f["FileName"].split("|")[-1] == "ember.exe")
        expected_rows = [
            ("SOFTWARE\\Classes\\ember", "", "URL:Ember sign-in"),
            ("SOFTWARE\\Classes\\ember", "URL Protocol", ""),
            ("SOFTWARE\\Classes\\ember\\DefaultIcon", "", '"[#EmberExe]",0'),
            ("SOFTWARE\\Classes\\ember\\shell\\open\\command", "", '"[#EmberExe]" "%1"'),
        ]
        for key, name, value in expected_rows:
            row = one(registry, Root=HKLM, Key=key, Name=name)
            check(f"ember:// handler: HKLM\\{key} {name or '(default)'} = {value}",
                  row is not None and row["Value"] == value and row["Component_"] == app_component, str(row))
        run_key = one(registry, Root=HKLM, Key="SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run", Name="Ember")
        check("autostart: HKLM Run key starts ember.exe at every sign-in",
              run_key is not None and run_key["Value"] == '"[#EmberExe]"', str(run_key))
        shortcut = one(shortcuts, Directory_="ProgramMenuFolder")
        check("Start-menu entry 'Ember' starts ember.exe",
              shortcut is not None and shortcut["Name"].split("|")[-1] == "Ember" and shortcut["Target"] == "[#EmberExe]",
              str(shortcut))

    install_under_wine(msi, with_app)

    print(f"# tables in the MSI: {' '.join(sorted(tables))}")
    print(f"# tables checked: {', '.join(tables_checked)}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
