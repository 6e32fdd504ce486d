# Shared by the scripts in scripts/perf: the load generator and the relay
# config they drive. Source it from the repository root.

# Prints the path of the webhook_load bench binary (the load generator),
# building it if needed.
webhook_load_binary() {
  local bench
  bench="$(cargo bench --bench webhook_load --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)"
  [ -x "$bench" ] || { echo "could not find the webhook_load bench binary" >&2; return 1; }
  echo "$bench"
}

# write_bench_config DIR PORT: DIR/relay.toml with one Tel4vn [[webhook]]
# (the bench's account and key) and the journal in DIR/journal.
write_bench_config() {
  cat >"$1/relay.toml" <<TOML
[server]
listen = "127.0.0.1:$2"

[journal]
path = "$1/journal"

[[webhook]]
vendor = "tel4vn"
account = "bench"
api_key = "bench-key"
TOML
}

# make_work_dir: sets $work to a fresh directory and $relay to ""; at exit the
# relay whose pid is then in $relay, if any, is stopped and $work removed.
make_work_dir() {
  work="$(mktemp -d)"
  relay=""
  trap 'if [ -n "$relay" ]; then kill -TERM "$relay" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
}
