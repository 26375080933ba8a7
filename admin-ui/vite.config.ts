import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

export default defineConfig({
  plugins: [react()],
  // The portal serves the build under /admin/ (crates/portal/src/admin_page.rs).
  base: "/admin/",
  clearScreen: false,
  // Browsers new enough for es2022 support modulepreload: no polyfill in the bundle.
  build: { target: "es2022", outDir: "dist", emptyOutDir: true, modulePreload: { polyfill: false } },
  server: { proxy: { "/api": "http://127.0.0.1:8080" } },
});
