/// <reference types="vitest/config" />
// Dev server: `npm run dev` serves the app with hot reload and forwards every API path to a running
// backend (SENSORCLOUD_API, default http://127.0.0.1:8083), WebSocket included, so the browser sees
// one origin as it does behind the monolith or nginx.
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

const backend = process.env.SENSORCLOUD_API ?? 'http://127.0.0.1:8083'
const API_PATHS = ['/auth', '/users', '/api', '/iot', '/status', '/health', '/ready', '/.well-known']

export default defineConfig({
  plugins: [vue()],
  base: '/',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 400,
  },
  server: {
    port: 5173,
    proxy: Object.fromEntries(
      API_PATHS.map((path) => [path, { target: backend, changeOrigin: true, ws: path === '/api' }]),
    ),
  },
  test: {
    include: ['tests/unit/**/*.test.ts'],
    environment: 'node',
    restoreMocks: true,
  },
})
