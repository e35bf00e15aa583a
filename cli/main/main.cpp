// ember: one binary, three subcommands (serve, generate, bench).
// Flags are parsed here and only here; each subcommand gets its options struct.

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/config_file.h"
#include "cli/options.h"
#include "common/version.h"
#include "engine/parallel/mpi_group.h"
#include "engine/parallel/tcp_group.h"

namespace ember {
namespace {

// The numeric formats an engine runs with: --dtype and --quantization (ModelOptions), --kv-cache-dtype
// (EngineOptions). `ember serve`, `generate` and `bench throughput` take them alike.
void add_number_format_flags(CLI::App* cmd, ModelOptions* m, EngineOptions* e) {
  cmd->add_option("--dtype", m->dtype, "Compute dtype: auto | bfloat16 | float16 | float32")
      ->check(CLI::IsMember({"auto", "bfloat16", "float16", "float32"}));
  cmd->add_option("--quantization,-q", m->quantization,
                  "none | fp8: on GPUs of compute capability 8.9+, the layers' weights quantized at load to FP8 E4M3 "
                  "with a scale per output channel, activations per token (vLLM's dynamic fp8)")
      ->check(CLI::IsMember({"none", "fp8"}));
  cmd->add_option("--kv-cache-dtype", e->kv_cache_dtype,
                  "KV cache: auto (the activations' dtype: float32 on the CPU, bfloat16 on a GPU), bfloat16 (GPU), "
                  "float32 (CPU) or fp8 (= fp8_e4m3: one byte an element, scaled by the checkpoint's k_scale/v_scale "
                  "or 1)")
      ->check(CLI::IsMember({"auto", "bfloat16", "float32", "fp8", "fp8_e4m3"}));
  cmd->add_flag("--calculate-kv-scales", e->calculate_kv_scales,
                "With --kv-cache-dtype fp8: set each layer's k_scale / v_scale from the first step's K and V "
                "(max|k| / 200, max|v| / 100, as vLLM) instead of the checkpoint's or 1");
}

void add_model_flags(CLI::App* cmd, ModelOptions* o) {
  cmd->add_option("--model,-m", o->model, "GGUF file or Hugging Face model directory (default: " + default_model_path() + ")");
  cmd->add_option("--load-format", o->load_format, "auto | gguf | safetensors | dummy")
      ->check(CLI::IsMember({"auto", "gguf", "safetensors", "dummy"}));
  cmd->add_option("--device", o->device, "auto | cpu | cuda (auto: the GPU if there is one)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer file or directory (default: the model's)");
  cmd->add_option("--max-model-len", o->max_model_len, "Context length (default: the model's)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--tensor-parallel-size", o->tensor_parallel_size,
                  "ranks to shard the model over (on the CPU: threads of this process, all-reducing through shared "
                  "memory)")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--nnodes", o->nnodes,
                  "Ranks as processes meeting over TCP (one rank per process; equal to --tensor-parallel-size): "
                  "every process runs the same command with its own --node-rank")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--node-rank", o->node_rank, "This process's rank, 0 to --nnodes - 1 (rank 0 serves)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--master-addr", o->master_addr, "Rank 0's address (the others connect to it)");
  cmd->add_option("--master-port", o->master_port, "The port rank 0 listens on for the other ranks")
      ->check(CLI::Range(1, 65535));
  cmd->add_option("--rendezvous-timeout", o->rendezvous_timeout_s, "Seconds for every rank to arrive")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--collective-timeout", o->collective_timeout_s,
                  "Seconds one step's exchange between ranks may take before every rank ends with a message "
                  "(TCP ranks; on GPUs, NCCL's watchdog)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--lm-head", o->lm_head,
                  "How tensor-parallel ranks share the vocabulary's matrices: vocab-parallel (each holds its rows "
                  "of the embedding and LM head; lookups all-reduced, logits all-gathered) or replicated (each holds "
                  "and computes all of them)")
      ->check(CLI::IsMember({"vocab-parallel", "replicated"}));
  cmd->add_option("--speculative-config", o->speculative_config,
                  "Speculative decoding, as vLLM: a JSON object, e.g. '{\"method\": \"ngram\", "
                  "\"num_speculative_tokens\": 4, \"prompt_lookup_min\": 2, \"prompt_lookup_max\": 4}'");
  cmd->add_option("--speculative-model", o->speculative_model, "Draft model for speculative decoding");
  cmd->add_option("--num-speculative-tokens", o->num_speculative_tokens, "Tokens proposed per step")->check(CLI::NonNegativeNumber);
}

void add_async_scheduling_flags(CLI::App* cmd, EngineOptions* o) {
  cmd->add_flag_callback("--async-scheduling", [o] { o->async_scheduling = 1; },
                         "Schedule the next step while the GPU runs this one (default on a GPU)");
  cmd->add_flag_callback("--no-async-scheduling", [o] { o->async_scheduling = 0; },
                         "Wait for each step's tokens before scheduling the next (default on the CPU)");
}

void add_engine_flags(CLI::App* cmd, EngineOptions* o) {
  cmd->add_option("--max-num-seqs", o->max_num_seqs, "Most sequences in one step")->check(CLI::PositiveNumber);
  cmd->add_option("--max-num-batched-tokens", o->max_num_batched_tokens, "Token budget of one step (default: 512 on the CPU, 8192 on a GPU)")->check(CLI::PositiveNumber);
  cmd->add_flag("--enable-chunked-prefill,!--no-enable-chunked-prefill", o->enable_chunked_prefill, "Split long prompts over steps");
  cmd->add_option("--scheduling-policy", o->scheduling_policy, "fcfs | priority")->check(CLI::IsMember({"fcfs", "priority"}));
  cmd->add_option("--kv-cache-memory-bytes", o->kv_cache_memory_bytes, "KV-cache size in bytes (CPU default: 1 GiB)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--num-gpu-blocks-override", o->num_gpu_blocks_override, "Exactly this many KV blocks")->check(CLI::NonNegativeNumber);
  cmd->add_option("--block-size", o->block_size, "Tokens per KV-cache block")->check(CLI::IsMember({8, 16, 32, 64, 128}));
  cmd->add_option("--gpu-memory-utilization", o->gpu_memory_utilization, "Fraction of GPU memory ember may use")
      ->check(CLI::Range(0.05, 1.0));
  cmd->add_flag("--enable-prefix-caching,!--no-enable-prefix-caching", o->enable_prefix_caching, "Reuse KV blocks of shared prefixes");
  cmd->add_flag("--enforce-eager", o->enforce_eager, "Disable CUDA graphs");
  add_async_scheduling_flags(cmd, o);
  cmd->add_option("--num-threads", o->num_threads, "CPU backend threads (0: all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", o->seed, "Seed for dummy weights and unseeded sampling");
}

}  // namespace
}  // namespace ember

int main(int argc, char** argv) {
  using namespace ember;
  CLI::App app{"ember: an LLM inference server (OpenAI-compatible API, continuous batching, paged KV cache)", "ember"};
  app.set_version_flag("--version,-V", std::string("ember ") + EMBER_VERSION);
  app.require_subcommand(1);
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::string config_file;  // consumed by expand_config_file(); declared here for --help
  app.add_option("--config", config_file, "JSON file of flags (see configs/); flags on the command line win");
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace | debug | info | warn | error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));

  ServeOptions serve;
  CLI::App* serve_cmd = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API");
  add_model_flags(serve_cmd, &serve.model);
  add_engine_flags(serve_cmd, &serve.engine);
  add_number_format_flags(serve_cmd, &serve.model, &serve.engine);
  serve_cmd->add_option("--host", serve.host, "Address to bind (use 0.0.0.0 to expose)");
  serve_cmd->add_option("--port", serve.port, "Port to listen on")->check(CLI::Range(1, 65535));
  serve_cmd->add_option("--api-key", serve.api_key, "Require this bearer token")->envname("EMBER_API_KEY");
  serve_cmd->add_option("--served-model-name", serve.served_model_name, "Model name(s) the API answers to");
  serve_cmd->add_option("--chat-template", serve.chat_template, "Jinja chat template file overriding the model's");
  serve_cmd->add_option("--max-queue-len", serve.max_queue_len,
                        "Sequences waiting to be scheduled (a request counts its n) before 503")
      ->check(CLI::PositiveNumber);
  serve_cmd->add_option("--max-prompts-per-request", serve.max_prompts_per_request,
                        "Prompts one /v1/completions request may carry")
      ->check(CLI::PositiveNumber);
  serve_cmd->add_option("--health-stall-timeout", serve.health_stall_timeout_s,
                        "Seconds the engine may have requests without completing a step before /health says 503 "
                        "(0: never)")
      ->check(CLI::NonNegativeNumber);
  serve_cmd->add_flag("--exit-on-stall", serve.exit_on_stall,
                      "Exit (status 3) when the engine stalls that long, for a supervisor to restart it");
  serve_cmd->add_option("--max-sequences-per-request", serve.max_sequences_per_request,
                        "Sequences (prompts x n) one request may ask for")
      ->check(CLI::PositiveNumber);
  serve_cmd->add_option("--drain-timeout", serve.drain_timeout_s, "Seconds to finish requests on SIGTERM");
  serve_cmd
      ->add_option("--allowed-origins", serve.allowed_origins,
                   "Origins browsers may call the API from (CORS): a JSON list as vLLM takes it, or the flag repeated; "
                   "default [\"*\"], any origin")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  serve_cmd->add_flag("--trust-request-chat-template", serve.trust_request_chat_template,
                      "Accept a chat_template sent in a request (refused otherwise: it runs on the server's CPU)");
  serve_cmd
      ->add_option("--tool-call-parser", serve.tool_call_parser,
                   "How the model writes tool calls: hermes (<tool_call>{...}</tool_call>: Qwen2.5, Hermes, SmolLM2), "
                   "llama3_json (Llama 3.1+), mistral ([TOOL_CALLS]); default: read from the chat template (hermes "
                   "for a template without tools, whose system message ember then gives the tools)")
      ->check(CLI::IsMember({"hermes", "llama3_json", "mistral"}));
  serve_cmd->add_flag("--enable-auto-tool-choice,!--no-enable-auto-tool-choice", serve.enable_auto_tool_choice,
                      "Parse the model's tool calls for tool_choice \"auto\" (on by default; vLLM's flag; off: such "
                      "requests get 400)");
  serve_cmd->add_option("--max-connections", serve.max_connections,
                        "Open HTTP connections in total; more are answered 503 and closed")
      ->check(CLI::PositiveNumber);
  serve_cmd->add_option("--max-connections-per-client", serve.max_connections_per_client,
                        "Open HTTP connections per client address (0: no cap)")
      ->check(CLI::NonNegativeNumber);
  serve_cmd->add_option("--http-read-timeout", serve.http_read_timeout_s,
                        "Seconds a request's head may take to arrive (408 after); its body must then keep up "
                        "256 KiB/s on average")
      ->check(CLI::PositiveNumber);
  serve_cmd->add_option("--http-keep-alive-timeout", serve.http_keep_alive_timeout_s,
                        "Seconds an idle kept-alive connection stays open")
      ->check(CLI::PositiveNumber);

  GenerateOptions gen;
  CLI::App* gen_cmd = app.add_subcommand("generate", "Generate text offline and print tokens/s");
  add_model_flags(gen_cmd, &gen.model);
  add_engine_flags(gen_cmd, &gen.engine);
  add_number_format_flags(gen_cmd, &gen.model, &gen.engine);
  gen_cmd->add_option("--prompt,-p", gen.prompt, "Prompt text");
  gen_cmd->add_option("--prompts-file", gen.prompts_file, "One prompt per line, run as a batch");
  gen_cmd->add_flag("--chat", gen.chat, "Wrap the prompt in the model's chat template");
  gen_cmd->add_option("--max-tokens,-n", gen.max_tokens, "Tokens to generate")->check(CLI::PositiveNumber);
  gen_cmd->add_option("--temperature", gen.temperature, "0: greedy")->check(CLI::NonNegativeNumber);
  gen_cmd->add_option("--top-p", gen.top_p)->check(CLI::Range(0.0, 1.0));
  gen_cmd->add_option("--top-k", gen.top_k);
  gen_cmd->add_option("--sampling-seed", gen.sampling_seed, "Per-request sampling seed");
  gen_cmd->add_flag("--ignore-eos", gen.ignore_eos, "Keep generating past the end-of-sequence token");
  gen_cmd->add_option("--stop", gen.stop, "Stop string (repeatable); not included in the output")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);

  BenchOptions bench;
  CLI::App* bench_cmd = app.add_subcommand("bench", "Load-test an OpenAI-compatible server (serve | sweep | throughput)");
  bench_cmd->add_option("mode", bench.mode, "serve | sweep | throughput")->check(CLI::IsMember({"serve", "sweep", "throughput"}));
  bench_cmd->add_option("--base-url", bench.base_url, "Server to load (scheme://host:port[/prefix])");
  bench_cmd->add_option("--endpoint", bench.endpoint, "/v1/completions or /v1/chat/completions");
  bench_cmd->add_option("--model", bench.model, "serve/sweep: model name to request (default: the server's first); "
                                                "throughput: GGUF file or HF directory");
  bench_cmd->add_option("--api-key", bench.api_key, "Bearer token")->envname("OPENAI_API_KEY");
  bench_cmd->add_option("--tokenizer", bench.tokenizer, "Local tokenizer (GGUF, tokenizer.json/.model, HF dir) for exact "
                                                        "prompt lengths (default: the server's /tokenize)");
  bench_cmd->add_option("--timeout", bench.timeout_s, "Seconds a request may take")->check(CLI::PositiveNumber);
  bench_cmd->add_flag("--ignore-eos,!--no-ignore-eos", bench.ignore_eos, "Ask for exactly max_tokens (default on)");
  bench_cmd->add_option("--dataset,--dataset-name", bench.dataset, "random | sharegpt | prefix | jsonl")
      ->check(CLI::IsMember({"random", "sharegpt", "prefix", "jsonl"}));
  bench_cmd->add_option("--dataset-path", bench.dataset_path, "ShareGPT JSON or JSONL file");
  bench_cmd->add_option("--num-prompts", bench.num_prompts)->check(CLI::PositiveNumber);
  bench_cmd->add_option("--random-input-len", bench.random_input_len)->check(CLI::PositiveNumber);
  bench_cmd->add_option("--random-output-len", bench.random_output_len)->check(CLI::PositiveNumber);
  bench_cmd->add_option("--random-range-ratio", bench.random_range_ratio, "Lengths uniform in [L(1-r), L(1+r)]")
      ->check(CLI::Range(0.0, 0.999));
  bench_cmd->add_option("--prefix-len", bench.prefix_len, "prefix dataset: tokens of each shared prefix")->check(CLI::PositiveNumber);
  bench_cmd->add_option("--num-prefix-groups", bench.num_prefix_groups, "prefix dataset: distinct prefixes")->check(CLI::PositiveNumber);
  bench_cmd->add_option("--sharegpt-output-len", bench.sharegpt_output_len, "Override the replies' lengths")->check(CLI::NonNegativeNumber);
  // "inf" (vLLM's default) means all at once, as 0 does.
  bench_cmd->add_option_function<std::string>("--request-rate", [&bench](const std::string& v) {
        bench.request_rate = v == "inf" ? 0 : std::stod(v);
      }, "Requests/s, Poisson (or gamma with --burstiness); inf: all at once")
      ->check([](const std::string& v) -> std::string {
        if (v == "inf") return "";
        try {
          return std::stod(v) >= 0 ? "" : "must be >= 0 or inf";
        } catch (...) {
          return "must be a number or inf";
        }
      });
  bench_cmd->add_option("--burstiness", bench.burstiness, "Gamma shape of arrival gaps (1: Poisson)")->check(CLI::PositiveNumber);
  bench_cmd->add_option("--max-concurrency", bench.max_concurrency, "Most requests in flight (0: unlimited)")->check(CLI::NonNegativeNumber);
  bench_cmd->add_option("--num-warmups", bench.num_warmups, "Unmeasured requests sent first")->check(CLI::NonNegativeNumber);
  bench_cmd->add_option("--seed", bench.seed, "Seed of the dataset and arrival times");
  bench_cmd->add_option("--request-rates", bench.sweep_rates, "sweep: rates to run (comma separated)")
      ->delimiter(',')->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  bench_cmd->add_option("--max-concurrencies", bench.sweep_concurrencies, "sweep: concurrencies to run (comma separated)")
      ->delimiter(',')->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  bench_cmd->add_option("--percentiles,--metric-percentiles", bench.percentiles, "Extra percentiles (comma separated)")
      ->delimiter(',')->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  bench_cmd->add_option("--goodput", bench.goodput, "SLOs for goodput, e.g. ttft:200 tpot:50 e2el:2000")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  bench_cmd->add_option("--result-json", bench.result_json, "Write all metrics and per-request records here");
  bench_cmd->add_option("--report-html", bench.report_html, "Write a self-contained HTML report with plots here");
  bench_cmd->add_flag("--progress,!--no-progress", bench.progress, "Live progress line on a terminal");
  // throughput: the engine's settings (the model is --model).
  bench_cmd->add_option("--load-format", bench.engine_model.load_format, "throughput: auto | gguf | safetensors | dummy")
      ->check(CLI::IsMember({"auto", "gguf", "safetensors", "dummy"}));
  bench_cmd->add_option("--device", bench.engine_model.device, "throughput: auto | cpu | cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  bench_cmd->add_option("--max-num-seqs", bench.engine.max_num_seqs, "throughput: most sequences in one step")->check(CLI::PositiveNumber);
  bench_cmd->add_option("--max-num-batched-tokens", bench.engine.max_num_batched_tokens, "throughput: token budget of one step")
      ->check(CLI::PositiveNumber);
  bench_cmd->add_option("--num-threads", bench.engine.num_threads, "throughput: CPU backend threads (0: all cores)")
      ->check(CLI::NonNegativeNumber);
  bench_cmd->add_option("--gpu-memory-utilization", bench.engine.gpu_memory_utilization,
                        "throughput: share of GPU memory for weights, activations and KV cache")
      ->check(CLI::Range(0.05, 1.0));
  bench_cmd->add_flag("--enforce-eager", bench.engine.enforce_eager, "throughput: disable CUDA graphs");
  bench_cmd->add_option("--kv-cache-memory-bytes", bench.engine.kv_cache_memory_bytes,
                        "throughput: KV-cache size in bytes (CPU default: 1 GiB)")
      ->check(CLI::NonNegativeNumber);
  add_number_format_flags(bench_cmd, &bench.engine_model, &bench.engine);
  add_async_scheduling_flags(bench_cmd, &bench.engine);

  // A --config file becomes flags placed before the user's, so the user's win.
  std::vector<std::string> args = config_args_from_argv(argc, argv);
  try {
    if (auto status = expand_config_file(&args); !status) {
      std::fprintf(stderr, "ember: %s\n", status.error().message.c_str());
      return 2;
    }
    // vLLM's two-letter short flag, which CLI11 cannot name: -tp N is --tensor-parallel-size N.
    for (std::string& a : args) {
      if (a == "-tp") a = "--tensor-parallel-size";
      if (a.rfind("-tp=", 0) == 0) a = "--tensor-parallel-size=" + a.substr(4);
    }
    std::vector<std::string> reversed(args.rbegin(), args.rend() - 1);
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  // Logs go to stderr: stdout carries what a command produces (generated text).
  spdlog::set_default_logger(spdlog::stderr_color_mt("ember"));
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");

  // Tensor-parallel ranks as processes: started by an MPI launcher (mpirun,
  // srun), or meeting over TCP (--nnodes). Rank 0 serves (or generates); the
  // others run its steps.
  ModelOptions* model = serve_cmd->parsed() ? &serve.model : gen_cmd->parsed() ? &gen.model : nullptr;
  std::unique_ptr<ProcessGroup> group;
  if (model != nullptr && model->nnodes > 1) {
    if (model->tensor_parallel_size == 1) model->tensor_parallel_size = model->nnodes;
    auto tcp = TcpGroup::join(Rendezvous{model->nnodes, model->node_rank, model->master_addr, model->master_port,
                                         model->rendezvous_timeout_s, model->collective_timeout_s});
    if (!tcp) {
      spdlog::error("{}", tcp.error().message);
      return 2;
    }
    group = std::move(*tcp);
  } else {
    auto mpi = MpiGroup::from_launcher();
    if (!mpi) {
      spdlog::error("{}", mpi.error().message);
      return 2;
    }
    group = std::move(*mpi);
    if (group && model == nullptr) {
      spdlog::error("under an MPI launcher ember runs serve or generate");
      return 2;
    }
  }
  if (group) {
    model->process_group = group.get();
    EngineOptions* engine = serve_cmd->parsed() ? &serve.engine : &gen.engine;
    if (group->rank() > 0) return run_tensor_parallel_worker(*model, *engine);
  }
  if (serve_cmd->parsed()) return run_serve(serve);
  if (gen_cmd->parsed()) return run_generate(gen);
  if (bench.mode == "throughput") {
    bench.engine_model.model = bench.model;
    bench.engine_model.tokenizer = bench.tokenizer;
  }
  return run_bench(bench);
}
