# kpx node agent image (docs/install.md). Build from the repository root:
#   docker build -t kpx:dev .
#
# Base images are pinned by exact version tag. To pin them by digest as well, pass the digest
# (with its "@") as a build argument; the tag stays as the human-readable name:
#   docker build --build-arg NODE_DIGEST=@sha256:<digest> --build-arg DEBIAN_DIGEST=@sha256:<digest> -t kpx:dev .
#
# The Node version is the project's `node` devDependency (package-lock.json): kpx runs its
# TypeScript sources directly, with Node 24's type stripping, so no compile step is needed.
# e2e/image/dockerfile.test.ts checks this file statically (hadolint, COPY sources, the
# entrypoint's module graph against .dockerignore, the Node version).

ARG NODE_DIGEST=""
ARG DEBIAN_DIGEST=""

# ---- build: production dependencies only, exactly as package-lock.json pins them ----------------
FROM node:24.21.0-bookworm-slim${NODE_DIGEST} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no production dependency has an install script (only the dev-only `node`
# package does), so nothing runs at install time.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# ---- runtime: Debian bookworm with the netfilter tools, Node's binary, and kpx -----------------
FROM debian:12.11-slim${DEBIAN_DIGEST}

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="kpx" \
      org.opencontainers.image.description="A kube-proxy-style Service proxy for Kubernetes that proves its iptables rules before applying them" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/kpx-proxy/kpx" \
      org.opencontainers.image.base.name="docker.io/library/debian:12.11-slim"

# Node's binary only (no npm, no corepack): it needs libstdc++6 and libgcc-s1, which the slim
# base already carries (apt itself depends on them).
COPY --from=build /usr/local/bin/node /usr/local/bin/node

# iptables ships both backends (iptables-nft*, iptables-legacy*) and ip6tables; kpx picks the
# backend the node uses (kpx run --iptables-backend, default auto). conntrack deletes stale UDP
# flows; nfacct gives the kube-proxy packet counters (kpx runs without it too). Versions are
# bookworm's (apt-cache policy). The build fails here if a binary kpx runs does not start.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      iptables=1.8.9-2 \
      conntrack=1:1.4.7-1+b2 \
      nfacct=1.0.2-3 \
 && rm -rf /var/lib/apt/lists/* \
 && /usr/local/bin/node --version \
 && iptables-nft --version && iptables-nft-save --version && iptables-nft-restore --version \
 && ip6tables-nft --version && ip6tables-nft-save --version && ip6tables-nft-restore --version \
 && iptables-legacy --version && iptables-legacy-save --version && iptables-legacy-restore --version \
 && ip6tables-legacy --version && ip6tables-legacy-save --version && ip6tables-legacy-restore --version \
 && conntrack --version

WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/node_modules ./node_modules
COPY package.json ./
COPY controller/bin ./controller/bin
COPY controller/src ./controller/src
COPY examples ./examples
COPY crds ./crds

# root (uid 0) on purpose: iptables-restore, conntrack and nfacct talk netlink to the kernel and need
# CAP_NET_ADMIN (and CAP_NET_RAW) in the node's network namespace; the chart grants those two
# capabilities instead of privileged mode, and the root filesystem can be read-only (kpx writes
# nothing; the xtables lock is the /run/xtables.lock hostPath mount).
# hadolint ignore=DL3002
USER 0:0

# Exec form: no shell at run time. The chart passes `run --config=... --hostname-override=...`.
ENTRYPOINT ["/usr/local/bin/node", "/app/controller/bin/kpx.js"]
CMD ["--help"]
