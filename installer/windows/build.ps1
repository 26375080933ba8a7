# Builds Ember's MSI on a Windows build machine (installer/windows/README.md).
#   powershell -ExecutionPolicy Bypass -File installer\windows\build.ps1 -WintunZip C:\path\wintun-0.14.1.zip
# Output: artifacts\windows\Ember_<version>_x64.msi
param(
    [Parameter(Mandatory = $true)] [string] $WintunZip,
    [string] $Version = ""
)
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..\..")

if (-not $Version) {
    $Version = (Select-String -Path Cargo.toml -Pattern '^version = "(.+)"' | Select-Object -First 1).Matches[0].Groups[1].Value
}
$out = "artifacts\windows"
$stage = "$out\stage"
New-Item -ItemType Directory -Force -Path $stage | Out-Null

# 1. wintun.dll from the official zip: the amd64 build, Authenticode-signed by WireGuard LLC.
$unzipped = "$out\wintun"
Expand-Archive -Force -Path $WintunZip -DestinationPath $unzipped
$dll = Get-ChildItem -Recurse -Path $unzipped -Filter wintun.dll | Where-Object { $_.FullName -match '\\amd64\\' } | Select-Object -First 1
if (-not $dll) { throw "no bin\amd64\wintun.dll in $WintunZip" }
$signature = Get-AuthenticodeSignature $dll.FullName
if ($signature.Status -ne "Valid" -or $signature.SignerCertificate.Subject -notmatch "WireGuard LLC") {
    throw "wintun.dll is not validly signed by WireGuard LLC: $($signature.Status) $($signature.SignerCertificate.Subject)"
}
Copy-Item $dll.FullName "$stage\wintun.dll"
# 2. The service refuses any other wintun.dll: it compiles in the pin installer\windows\wintun.sha256.
$pinned = (Get-Content "$PSScriptRoot\wintun.sha256" -Raw).Trim()
$actual = (Get-FileHash -Algorithm SHA256 "$stage\wintun.dll").Hash.ToLower()
if ($actual -ne $pinned) { throw "wintun.dll has SHA-256 $actual, the service pins $pinned (installer\windows\wintun.sha256)" }
Write-Host "wintun.dll SHA-256 $actual"

# 3. The web UI, then the app (production assets protocol) and the service.
npm ci --no-audit --no-fund
npm run build:ui
cargo build --release --locked -p ember-app --features tauri/custom-protocol
cargo build --release --locked -p ember-tunnel-service
$target = if ($env:CARGO_TARGET_DIR) { $env:CARGO_TARGET_DIR } else { "target" }
Copy-Item "$target\release\ember.exe", "$target\release\ember-tunnel.exe" $stage

# Optional: sign the executables here, before they go into the MSI:
#    signtool sign /fd sha256 /tr <timestamp URL> /td sha256 /a $stage\ember.exe $stage\ember-tunnel.exe

# 4. The icon for Add/Remove Programs and the Start menu.
$icon = "src-tauri\icons\icon.ico"
if (-not (Test-Path $icon)) { npx tauri icon src-tauri\icons\icon.png --output src-tauri\icons }

# 5. The MSI (WiX v4/v5: dotnet tool install --global wix; wix extension add -g WixToolset.Util.wixext).
$msi = "$out\Ember_${Version}_x64.msi"
wix build installer\windows\ember.wxs -arch x64 -ext WixToolset.Util.wixext `
    -d Version=$Version -d BinDir=$stage -d IconFile=$icon -o $msi
if ($LASTEXITCODE -ne 0) { throw "wix build failed" }

# Optional: sign the MSI the same way (signtool sign … $msi).
Write-Host "built $msi"
