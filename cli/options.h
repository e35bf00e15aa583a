#pragma once
// What the command line (and a JSON config file) can set. Flag names follow
// vLLM's where vLLM has the flag, so people who know vLLM know ember.
// Parsed once, in cli/main/main.cpp; everything downstream receives these structs.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ember {

class ProcessGroup;  // engine/parallel/process_group.h

struct ModelOptions {
  std::string model;                 // GGUF file or HF directory; empty: the default model
  std::string load_format = "auto";  // auto | gguf | safetensors | dummy
  std::string dtype = "auto";        // auto | bfloat16 | float16 | float32
  std::string quantization = "none";  // none | fp8 (GPU: FP8 E4M3 weights, dynamic per-token activations)
  std::string device = "auto";       // auto | cpu | cuda
  std::string tokenizer;             // override the model's tokenizer (file or dir)
  int64_t max_model_len = 0;         // 0: from the model config
  int tensor_parallel_size = 1;
  ProcessGroup* process_group = nullptr;  // set by main: ranks as processes (MPI or TCP), this one's (not a flag)
  // Ranks as processes meeting over TCP (engine/parallel/tcp_group.h); nnodes 1: not used.
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  double rendezvous_timeout_s = 300;  // for every rank to arrive
  double collective_timeout_s = 300;  // one step's exchange between ranks (TCP; NCCL's watchdog)
  std::string lm_head = "vocab-parallel";  // vocab-parallel | replicated (engine/parallel/shard.h)
  std::string speculative_config;  // --speculative-config JSON (engine/spec_decode/spec_config.h)
  std::string speculative_model;
  int num_speculative_tokens = 0;
};

struct EngineOptions {
  int max_num_seqs = 256;
  int64_t max_num_batched_tokens = 0;  // 0: 512 on the CPU, 8192 on a GPU
  bool enable_chunked_prefill = true;
  std::string scheduling_policy = "fcfs";  // fcfs | priority
  int64_t kv_cache_memory_bytes = 0;       // 0: 1 GiB on the CPU; GPUs use gpu_memory_utilization
  int64_t num_gpu_blocks_override = 0;     // >0: exactly this many KV blocks
  int block_size = 16;
  double gpu_memory_utilization = 0.9;
  bool enable_prefix_caching = true;
  bool enforce_eager = false;
  int async_scheduling = -1;  // 1: on, 0: off, -1: on for a GPU, off on the CPU
  std::string kv_cache_dtype = "auto";
  bool calculate_kv_scales = false;  // an FP8 cache's scales from the first step's K and V
  int num_threads = 0;  // CPU backend threads; 0: all cores
  int seed = 0;
};

struct ServeOptions {
  ModelOptions model;
  EngineOptions engine;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;
  std::vector<std::string> served_model_name;
  std::string chat_template;
  int max_queue_len = 1024;
  int max_prompts_per_request = 256;
  int max_sequences_per_request = 512;
  double health_stall_timeout_s = 120.0;  // /health 503 when the engine has work but no step for this long; 0: never
  bool exit_on_stall = false;
  double drain_timeout_s = 30.0;
  std::vector<std::string> allowed_origins = {"*"};
  bool trust_request_chat_template = false;  // a request's own chat_template is refused unless set (as vLLM)
  std::string tool_call_parser;              // hermes | llama3_json | mistral; empty: from the chat template
  bool enable_auto_tool_choice = true;       // tool_choice "auto" parses calls (vLLM needs the flag; ember's default)
  int max_connections = 2048;
  int max_connections_per_client = 512;
  double http_read_timeout_s = 10.0;
  double http_keep_alive_timeout_s = 5.0;
};

struct GenerateOptions {
  ModelOptions model;
  EngineOptions engine;
  std::string prompt;
  std::string prompts_file;
  bool chat = false;
  int max_tokens = 128;
  double temperature = 0.0;
  double top_p = 1.0;
  int top_k = -1;
  std::optional<int64_t> sampling_seed;
  bool ignore_eos = false;
  std::vector<std::string> stop;
};

struct BenchOptions {
  std::string mode = "serve";  // serve | sweep | throughput
  // The target (serve, sweep).
  std::string base_url = "http://127.0.0.1:8000";
  std::string endpoint = "/v1/completions";
  std::string model;             // the model name requested; empty: the server's first (GET /v1/models)
  std::string api_key;
  std::string tokenizer;         // local tokenizer for exact prompt lengths; empty: the server's /tokenize
  double timeout_s = 600;
  bool ignore_eos = true;
  // The dataset.
  std::string dataset = "random";  // random | sharegpt | prefix | jsonl
  std::string dataset_path;
  int num_prompts = 100;
  int random_input_len = 512;
  int random_output_len = 128;
  double random_range_ratio = 0;
  int prefix_len = 256;
  int num_prefix_groups = 4;
  int sharegpt_output_len = 0;  // > 0 overrides the replies' lengths
  // The load.
  double request_rate = 0;  // 0: all at once (inf)
  double burstiness = 1;
  int max_concurrency = 0;  // 0: unlimited
  int num_warmups = 0;
  int seed = 0;
  // sweep: one run per value of either list.
  std::vector<double> sweep_rates;
  std::vector<int> sweep_concurrencies;
  // Reports.
  std::vector<double> percentiles;   // added to 90, 95, 99
  std::vector<std::string> goodput;  // ttft:MS tpot:MS e2el:MS
  std::string result_json;
  std::string report_html;
  bool progress = true;
  // throughput (offline, no HTTP): the engine's own options.
  ModelOptions engine_model;
  EngineOptions engine;
};

// The default model: what `scripts/setup.sh` installs. $EMBER_MODEL overrides.
std::string default_model_path();

}  // namespace ember
