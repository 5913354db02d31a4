// Builds the dashboard into dist/ui; the gateway serves it at / (src/http/dashboard.ts).
import preact from '@preact/preset-vite'
import { defineConfig } from 'vite'

export default defineConfig({
  root: import.meta.dirname,
  base: '/ui/',
  plugins: [preact()],
  // Everything ships inside the package: no CDN, no fonts from the internet.
  build: {
    outDir: '../dist/ui',
    emptyOutDir: true,
    assetsDir: 'assets',
    // A CSP without 'unsafe-inline': no inlined data: URL assets either.
    assetsInlineLimit: 0,
    sourcemap: false,
    reportCompressedSize: false,
  },
})
