# syntax=docker/dockerfile:1
# One image for every Moleculer node of mintmesh: SERVICES chooses what a container
# hosts (api, users, tokens, ...), as with `npm run serve`.
#   docker build -t mintmesh .
#   docker run -e SERVICES=users -e TRANSPORTER=nats://nats:4222 -e MONGO_URI=... mintmesh

# ---- build: all dependencies, compile TypeScript to dist/ ----
FROM node:22-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json moleculer.config.ts ./
COPY bin ./bin
COPY lib ./lib
COPY mixins ./mixins
COPY middlewares ./middlewares
COPY services ./services
COPY types ./types
RUN npx tsc -p tsconfig.build.json

# ---- deps: production dependencies only ----
FROM node:22-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# ---- runtime: compiled JS and production node_modules, run as the unprivileged `node` user ----
FROM node:22-slim AS runtime
ENV NODE_ENV=production \
    SERVICEDIR=dist/services \
    PORT=3000 \
    HEALTH_PORT=9090 \
    DATA_DIR=/app/data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The operator page's static files (/ops, lib/gateway/ops/page.ts finds them beside dist/).
COPY public ./public
COPY package.json ./
# Only NeDB (no MONGO_URI) writes here; code and dependencies stay read-only for the app user.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
# 3000: the gateway's HTTP API (SERVICES=api); 9090: every node's health endpoint.
EXPOSE 3000 3030 9090
# Each node, gateway or not, answers on HEALTH_PORT (middlewares/health.middleware.ts):
# healthy = broker started and connected to NATS.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+process.env.HEALTH_PORT+'/health/ready').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# moleculer-runner handles SIGTERM itself: the broker stops its services, then exits.
CMD ["node", "--disable-warning=DEP0174", "--disable-warning=ExperimentalWarning", "--experimental-async-context-frame", "--max-semi-space-size=32", "node_modules/moleculer/bin/moleculer-runner.js", "--config", "dist/moleculer.config.js"]
