# The benchmark repository (sourced by bench.sh and bench-callgrind.sh):
# bench_repo DIR CONFIG writes DIR/repo with the fake engine's tiny
# (784 -> 784, y = 2x) and tiny10 (784 -> 10, what a classifier answers)
# models, each with the model config CONFIG (JSON), and an empty daemon
# config DIR/cfg.json.
bench_repo() {
  for m in tiny tiny10; do
    mkdir -p "$1/repo/$m/1"
    echo "$2" > "$1/repo/$m/config.json"
  done
  echo "PVFAKE scale=2 bias=0 n=784 sleep_ms=0 fail=0" > "$1/repo/tiny/1/model.onnx"
  echo "PVFAKE scale=2 bias=0 n=784 sleep_ms=0 fail=0 out=10" > "$1/repo/tiny10/1/model.onnx"
  echo '{}' > "$1/cfg.json"
}
