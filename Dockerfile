# One image for the four apps; docker-compose.yml picks the app with `command:`.
#   docker build -t push .
#   docker run --rm push node apps/center/dist/cli.js --help
# The apps need nats-server 2.11 or newer (they refuse to start on an older one): docker-compose.yml
# runs the official nats:2.11-alpine image.

# --- build: install every dependency, compile, then drop the dev ones --------------------------
FROM node:20-bookworm-slim AS build
WORKDIR /app

# Manifests first, so the npm ci layer is reused until a dependency changes.
COPY package.json package-lock.json ./
COPY apps/center/package.json apps/center/
COPY apps/coordinator/package.json apps/coordinator/
COPY apps/dispatcher/package.json apps/dispatcher/
COPY apps/edge/package.json apps/edge/
COPY libs/apps/package.json libs/apps/
COPY libs/client/package.json libs/client/
COPY libs/config/package.json libs/config/
COPY libs/db/package.json libs/db/
COPY libs/http/package.json libs/http/
COPY libs/logger/package.json libs/logger/
COPY libs/nats/package.json libs/nats/
COPY libs/presence/package.json libs/presence/
COPY libs/protocol/package.json libs/protocol/
RUN npm ci --no-audit --no-fund

COPY tsconfig.base.json tsconfig.json ./
COPY libs libs
COPY apps apps
# The web console (apps/center/dist/console) is bundled with esbuild and uPlot, dev dependencies.
RUN npx tsc -b tsconfig.json \
  && node apps/center/console/bundle.mjs \
  && npm prune --omit=dev --no-audit --no-fund

# --- runtime: compiled output, production dependencies, migrations -----------------------------
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app

COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
# Workspace packages: node_modules/@push/* link to these folders (package.json + dist/).
COPY --from=build /app/libs libs
COPY --from=build /app/apps apps
# libs/db finds migrations at <repo>/migrations.
COPY migrations migrations

USER node
EXPOSE 8080 8081 8082 8083
CMD ["node", "apps/center/dist/main.js"]
