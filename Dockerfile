# syntax=docker/dockerfile:1
# sluice gateway image. Three stages:
#   build:   all dependencies, compiles TypeScript and the dashboard into dist/
#   deps:    production dependencies only; isolated-vm and better-sqlite3 are native addons, so
#            this stage has the compilers their install scripts fall back to when no prebuilt
#            binary fits
#   runtime: Node 20 slim with node_modules from deps and dist/ from build; no compilers, runs as
#            the unprivileged `node` user
# Build: docker build -t sluice .
# Run your config: docker run -v $PWD/gateway.yaml:/etc/sluice/gateway.yaml:ro -p 7071:7071 sluice
#   (function code is found in the image: give `code:` as absolute paths under /app/functions)
# Run the demo:    docker run -p 7071:7071 sluice start --config config/gateway.yaml
# See docs/deploy.md (this file was written without a Docker engine at hand: not built here).

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are copied, and the native addons
# are not needed to compile (the deps stage builds them for the runtime).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
COPY connectors ./connectors
COPY ui ./ui
RUN npm run build

FROM node:20-bookworm-slim AS deps
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# The root `prepare` script (a build with dev tools) must not run here; the addons' own install
# scripts (prebuilt binary, else node-gyp) run through `npm rebuild`.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm rebuild better-sqlite3 isolated-vm esbuild \
 && npm cache clean --force

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
COPY --chown=root:root package.json ./
COPY --chown=root:root bin ./bin
COPY --chown=root:root functions ./functions
COPY --chown=root:root config ./config
# The code is owned by root and read-only for the gateway; only .sluice/ (the SQLite store of a
# single instance) is writable. In Kubernetes the root file system is read-only and .sluice is an
# emptyDir (deploy/kubernetes/statefulset.yaml).
RUN mkdir -p /app/.sluice && chown node:node /app/.sluice
USER node
EXPOSE 7071
# /admin/health answers 200 once every connection is up. The admin API answers loopback callers
# without a key, and with admin.key set this sends SLUICE_ADMIN_KEY. No curl in slim: node.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "const k=process.env.SLUICE_ADMIN_KEY;require('http').get({host:'127.0.0.1',port:7071,path:'/admin/health',headers:k?{'x-sluice-key':k}:{},timeout:4000},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1)).on('timeout',()=>process.exit(1))"]
# Exec form, no shell and no npm in between: SIGTERM reaches node, which drains and exits 0.
# The larger young generation is what `npm start` uses (bin/sluice.js explains it).
ENTRYPOINT ["node", "--max-semi-space-size=64", "bin/sluice.js"]
CMD ["start", "--config", "/etc/sluice/gateway.yaml"]
