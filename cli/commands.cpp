#include "cli/commands.h"

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include <spdlog/spdlog.h>

#include "cli/generate.h"
#include "models/model_source.h"
#ifdef EMBER_HAVE_CUDA
#include "kernels/cuda/device_info.h"
#endif

namespace ember {
namespace {

[[maybe_unused]] std::string gib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1ULL << 30));
  return buf;
}

// Resolves --device auto|cpu|cuda to what this machine can do, with a log line.
std::string resolve_device(const std::string& requested) {
#ifdef EMBER_HAVE_CUDA
  auto gpus = cuda_devices();
  for (const auto& g : gpus) {
    spdlog::info("GPU {}: {} (sm_{}{}, {} SMs, {} total, {} free)", g.index, g.name, g.major, g.minor, g.multiprocessors,
                 gib(g.total_memory), gib(g.free_memory));
  }
  if (requested == "cuda" && gpus.empty()) {
    spdlog::error("--device cuda: no CUDA device is visible");
    return "";
  }
  if (requested == "auto") {
    if (gpus.empty()) spdlog::info("no GPU found: using the CPU backend");
    return gpus.empty() ? "cpu" : "cuda";
  }
  return requested;
#else
  if (requested == "cuda") {
    spdlog::error("--device cuda: this ember was built without CUDA");
    return "";
  }
  if (requested == "auto") spdlog::info("built without CUDA: using the CPU backend");
  return "cpu";
#endif
}

// Resolves the device and opens the model, logging what it found; an empty
// result means an error was already logged.
std::optional<ModelSource> open_model(const ModelOptions& o, std::string* device) {
  *device = resolve_device(o.device);
  if (device->empty()) return std::nullopt;
  const std::string path = o.model.empty() ? default_model_path() : o.model;
  spdlog::info("loading {}", path);
  auto src = open_model_source(path, o.tokenizer);
  if (!src) {
    spdlog::error("{}", src.error().message);
    return std::nullopt;
  }
  const ModelConfig& c = src->config;
  spdlog::info("model: {} | {} layers, hidden {}, {} q heads / {} kv heads (head_dim {}), ffn {}, vocab {}, context {}{}",
               c.architecture, c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size,
               c.vocab_size, c.max_position_embeddings, c.tie_word_embeddings ? ", tied embeddings" : "");
  return std::move(src).value();
}

}  // namespace

std::string default_model_path() {
  if (const char* env = std::getenv("EMBER_MODEL")) return env;
  std::string dir;
  if (const char* env = std::getenv("EMBER_MODEL_DIR")) {
    dir = env;
  } else {
    const char* home = std::getenv("HOME");
    dir = std::string(home ? home : ".") + "/.cache/ember/models";
  }
  return dir + "/SmolLM2-135M-Instruct.Q4_1.gguf";
}

int run_serve(const ServeOptions& options) {
  std::string device;
  auto src = open_model(options.model, &device);
  if (!src) return 1;
  // The engine (issues 4-5) and the HTTP API (issue 6) are not built yet:
  // say so plainly instead of pretending to serve.
  spdlog::error("ember serve: the HTTP server is not implemented in this version ({}); the model loaded fine", device);
  return 3;
}

int run_generate(const GenerateOptions& options) {
  if (options.prompt.empty()) {
    spdlog::error("ember generate: give --prompt (--prompts-file needs the engine, not built yet)");
    return 2;
  }
  std::string device;
  auto src = open_model(options.model, &device);
  if (!src) return 1;
  if (device != "cpu") spdlog::warn("the CUDA backend is not built yet: generating on the CPU");
  return generate_one(*src, options);
}

int run_bench(const BenchOptions& options) {
  spdlog::error("ember bench {}: not implemented in this version", options.mode);
  return 3;
}

}  // namespace ember
