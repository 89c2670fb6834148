# berth's own image: a statically linked berth binary FROM scratch, nothing pulled.
# Build it with scripts/build-image.sh, which first builds the static binary:
#   RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target x86_64-unknown-linux-gnu
# (BERTH_BIN names another static build in the context, as the tests' debug one.)
# Run: see README "berth in containers".
FROM scratch
ARG BERTH_BIN=target/x86_64-unknown-linux-gnu/release/berth
COPY ${BERTH_BIN} /berth
# The node agent's own path is not a host path: it copies itself into its state directory
# (mounted from the host) and mounts that copy into replicas as their remote agent.
ENV BERTH_COPY_REMOTE_BINARY=true
ENTRYPOINT ["/berth"]
