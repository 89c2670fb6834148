# berth's own image: a statically linked berth binary FROM scratch, nothing pulled.
# Build it with scripts/build-image.sh, which first builds the static binary:
#   RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target x86_64-unknown-linux-gnu
# Run (see README "berth in containers"):
#   docker run -d --network host berth controller
#   docker run -d --network host --privileged -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /var/lib/berth:/var/lib/berth berth node --name "$(hostname)"
FROM scratch
COPY target/x86_64-unknown-linux-gnu/release/berth /berth
ENTRYPOINT ["/berth"]
