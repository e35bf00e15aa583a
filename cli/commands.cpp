#include "cli/commands.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cli/engine_setup.h"
#include "cli/generate.h"
#ifdef EMBER_HAVE_SERVER
#include "server/http_server.h"
#endif
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
#ifdef EMBER_HAVE_SERVER
  // Handler threads come and go with connections, and glibc gives threads
  // their own malloc arenas (up to 8 per core) that keep what was freed in
  // them: large requests parsed on many threads pile up (bench/
  // http_memory_bench.py measures it). A few arenas bound that; a
  // MALLOC_ARENA_MAX in the environment wins.
  if (!std::getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 4);
  // SIGTERM/SIGINT are taken by sigwait() below: block them before any thread
  // starts, so every thread inherits the mask and none is interrupted.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ServerConfig sc;
  sc.host = options.host;
  sc.port = options.port;
  sc.api_key = options.api_key;
  sc.served_model_names = options.served_model_name;
  sc.trust_request_chat_template = options.trust_request_chat_template;
  sc.tool_call_parser = options.tool_call_parser;
  sc.enable_auto_tool_choice = options.enable_auto_tool_choice;
  sc.allowed_origins.clear();
  for (std::string v : options.allowed_origins) {
    // CLI11 splits a JSON list itself and keeps each element's quotes and spaces: take them off.
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    while (!v.empty() && v.back() == ' ') v.pop_back();
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    if (v.empty() || v.front() != '[') {
      sc.allowed_origins.push_back(v);
      continue;
    }
    const nlohmann::json list = nlohmann::json::parse(v, nullptr, false);
    if (!list.is_array() || !std::all_of(list.begin(), list.end(), [](const nlohmann::json& o) { return o.is_string(); })) {
      spdlog::error("--allowed-origins {}: expected a JSON list of strings", v);
      return 2;
    }
    for (const auto& o : list) sc.allowed_origins.push_back(o.get<std::string>());
  }
  spdlog::debug("CORS: allowed origins {}", nlohmann::json(sc.allowed_origins).dump());
  sc.max_connections = options.max_connections;
  sc.max_connections_per_client = options.max_connections_per_client;
  sc.http_read_timeout_s = options.http_read_timeout_s;
  sc.http_keep_alive_timeout_s = options.http_keep_alive_timeout_s;
  sc.max_prompts_per_request = options.max_prompts_per_request;
  sc.max_sequences_per_request = options.max_sequences_per_request;
  sc.health_stall_timeout_s = options.health_stall_timeout_s;
  if (!options.chat_template.empty()) {
    std::FILE* f = std::fopen(options.chat_template.c_str(), "rb");
    if (!f) {
      spdlog::error("--chat-template {}: cannot open", options.chat_template);
      return 2;
    }
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) sc.chat_template.append(buf, n);
    std::fclose(f);
  }
  const std::string model_path = options.model.model.empty() ? default_model_path() : options.model.model;
  if (sc.served_model_names.empty()) {
    // A readable name, as llama-server has it: the model's file or directory name. The path as given (vLLM's
    // name) and the absolute path are accepted too.
    std::filesystem::path p(model_path);
    while (!p.empty() && !p.has_filename()) p = p.parent_path();  // "dir/" names dir
    sc.served_model_names.push_back(p.filename().string());
    for (const std::string& alias : {model_path, std::filesystem::absolute(model_path).lexically_normal().string()})
      if (alias != sc.served_model_names.front()) sc.model_aliases.push_back(alias);
  }
  HttpServer server(sc);
  // Listen first: /health answers 503 while the model loads.
  if (Status s = server.start(); !s) {
    spdlog::error("{}", s.error().message);
    return 1;
  }
  spdlog::info("listening on http://{}:{} (health: 503 until the model is loaded)", options.host, server.port());
  const bool loopback = options.host == "127.0.0.1" || options.host == "localhost" || options.host == "::1";
  if (!loopback && options.api_key.empty())
    spdlog::warn("listening on {} without --api-key: anyone who can reach this address can use the model and "
                 "its compute (set --api-key, or listen on 127.0.0.1)",
                 options.host);

  std::string device;
  auto src = open_model(options.model, &device);
  if (!src) return 1;
  auto engine = start_engine(*src, options.model, options.engine, device, options.max_queue_len);
  if (!engine) {
    spdlog::error("{}", engine.error().message);
    return 1;
  }
  if (Status s = server.set_ready(*src, **engine); !s) {
    spdlog::error("{}", s.error().message);
    return 1;
  }
  spdlog::info("ready: serving '{}' at http://{}:{}/v1", sc.served_model_names.front(), options.host, server.port());

  // --exit-on-stall: an engine that has had work without completing a step for
  // --health-stall-timeout seconds ends the process (status 3), for a
  // supervisor to restart; it cannot drain.
  std::atomic<bool> serving{true};
  std::thread watchdog;
  if (options.exit_on_stall && options.health_stall_timeout_s > 0) {
    watchdog = std::thread([&] {
      const auto bound = std::chrono::duration<double>(options.health_stall_timeout_s);
      while (serving.load()) {
        if ((*engine)->stalled_for() > bound) {
          spdlog::critical("the engine has not completed a step for {} s while it has requests: exiting "
                           "(--exit-on-stall)",
                           options.health_stall_timeout_s);
          spdlog::default_logger()->flush();
          std::_Exit(3);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }

  int sig = 0;
  sigwait(&signals, &sig);
  serving = false;
  if (watchdog.joinable()) watchdog.join();
  spdlog::info("{}: no new requests; finishing the running ones (up to {} s)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
               options.drain_timeout_s);
  server.stop_accepting();
  (*engine)->shutdown(std::chrono::milliseconds(static_cast<int64_t>(options.drain_timeout_s * 1000)));
  server.stop();
  spdlog::info("stopped");
  return 0;
#else
  (void)options;
  spdlog::error("ember serve: this ember was built without the HTTP server (cpp-httplib missing)");
  return 3;
#endif
}

int run_generate(const GenerateOptions& options) {
  if (options.prompt.empty() == options.prompts_file.empty()) {
    spdlog::error("ember generate: give either --prompt or --prompts-file");
    return 2;
  }
  std::string device;
  auto src = open_model(options.model, &device);
  if (!src) return 1;
  return generate(*src, options, device);
}

int run_tensor_parallel_worker(const ModelOptions& model, const EngineOptions& engine) {
  std::string device;
  const std::optional<ModelSource> src = open_model(model, &device);
  if (!src) return 1;
  auto rank = make_worker_rank(*src, model, engine, device);
  if (!rank) {
    spdlog::error("{}", rank.error().message);
    return 1;
  }
  // SIGTERM (which launchers forward to every rank) is rank 0's to act on: it
  // drains, then tells this rank to stop.
  signal(SIGTERM, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  spdlog::info("tensor-parallel rank ready: running rank 0's steps");
  rank->serve_rank_steps();
  return 0;
}

}  // namespace ember
