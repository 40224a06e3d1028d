# meshlet sidecar image.
#
# Stages, on official images:
#  - build: node:20-bookworm-slim with python3/make/g++ for node-gyp. `npm ci` installs exactly
#    package-lock.json, compiles TypeScript (the `prepare` script) and the SO_ORIGINAL_DST addon
#    (the `install` script, build/Release/original_dst.node); then dev dependencies are pruned.
#  - init: node:20-bookworm-slim plus iptables and nftables, for the `meshlet-init` container (--target init);
#  - runtime: Google's distroless Node.js 20 image (Debian 12 = bookworm, the same glibc as the
#    build stage). No shell, no package manager; only node and the app.
#
# Runs as UID/GID 1337 (Istio's proxy UID: the iptables rules installed by `meshlet iptables`
# never capture this user's traffic). Ports follow Istio: 15000 admin (bound to loopback by the
# bootstrap), 15001 outbound capture, 15006 inbound, 15021 /healthz/ready, 15090 Prometheus.
#
#   docker build -t meshlet:dev .
#   docker run --rm -v $PWD/envoy.yaml:/etc/meshlet/bootstrap.yaml:ro meshlet:dev
#   docker run --rm meshlet:dev --bootstrap /etc/meshlet/bootstrap.yaml --validate
#   docker run --rm --entrypoint /nodejs/bin/node meshlet:dev /app/bin/meshlet.js iptables --dry-run

FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts are skipped here (sources are not copied yet) and run below once they are.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json binding.gyp ./
COPY bin ./bin
COPY scripts ./scripts
COPY native ./native
COPY common ./common
COPY proxy ./proxy
COPY xds-client ./xds-client
COPY certs ./certs
COPY control-plane ./control-plane
# The addon build prints a note (and exits 0) if it fails; the image build insists on it because
# transparent interception needs it.
RUN npm run build \
 && node scripts/build-native.js \
 && test -f build/Release/original_dst.node \
 && npm prune --omit=dev \
 && npm cache clean --force

# The interception init container (`meshlet iptables`, run as root with NET_ADMIN/NET_RAW) needs the
# iptables (and, for --native-nftables, nft) binaries, which the distroless runtime does not have:
#   docker build --target init -t meshlet-init:dev .
FROM node:20-bookworm-slim AS init
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables nftables \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
ENTRYPOINT ["/usr/local/bin/node", "/app/bin/meshlet.js"]
CMD ["iptables", "--help"]

# The sidecar (the default target).
FROM gcr.io/distroless/nodejs20-debian12:nonroot AS runtime
WORKDIR /app
COPY --from=build --chown=0:0 /app/package.json ./package.json
COPY --from=build --chown=0:0 /app/node_modules ./node_modules
COPY --from=build --chown=0:0 /app/dist ./dist
COPY --from=build --chown=0:0 /app/bin ./bin
COPY --from=build --chown=0:0 /app/build/Release/original_dst.node ./build/Release/original_dst.node
COPY --from=build --chown=0:0 /app/control-plane/examples ./control-plane/examples
ENV NODE_ENV=production
USER 1337:1337
EXPOSE 15000 15001 15006 15021 15090
# No shell at run time: the health check is meshlet's own `wait` command against 15021 (served
# because CMD passes --health-port 15021). Kubernetes uses the readinessProbe in deploy/kubernetes/.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/nodejs/bin/node", "/app/bin/meshlet.js", "wait", "--admin", "http://127.0.0.1:15021/healthz/ready", "--timeout", "2"]
ENTRYPOINT ["/nodejs/bin/node", "/app/bin/meshlet.js", "proxy"]
CMD ["--bootstrap", "/etc/meshlet/bootstrap.yaml", "--stats-port", "15090", "--health-port", "15021"]
