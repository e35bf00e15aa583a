#include "cli/engine_setup.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "engine/parallel/process_group.h"
#include "engine/parallel/shard.h"
#include "engine/spec_decode/spec_config.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/cpu_ops.h"
#include "models/formats/hf_model_dir.h"
#include "models/weights.h"
#ifdef EMBER_HAVE_CUDA
#include "engine/cuda/cuda_model_runner.h"
#include "engine/cuda/cuda_parallel_runners.h"
#include "kernels/cuda/device_info.h"
#endif

namespace ember {
namespace {

Result<LlamaWeights> load_weights(const ModelSource& src, const ModelOptions& o, uint64_t seed,
                                  const LayerHook& hook = {}) {
  const std::string& format = o.load_format;
  if (format == "dummy") {
    spdlog::info("random weights (--load-format dummy, seed {}): {:.1f} MB", seed,
                 dummy_weights_bytes(src.config) / 1e6);
    return make_dummy_weights(src.config, seed, uint64_t{8} << 30, hook);
  }
  if (src.format == ModelFormat::kConfigOnly) return Error{src.path + ": has no weights; use --load-format dummy"};
  if (src.format == ModelFormat::kGguf) {
    if (format == "safetensors") return Error{src.path + ": --load-format safetensors, but this is a GGUF file"};
    return load_llama_weights(*src.gguf, src.config, hook);
  }
  if (format == "gguf") return Error{src.path + ": --load-format gguf, but this is a model directory"};
  auto dir = HfModelDir::open(src.path);
  if (!dir) return dir.error();
  return load_llama_weights(*dir, hook);
}

LmHead lm_head_of(const ModelOptions& o) {
  return o.lm_head == "replicated" ? LmHead::kReplicated : LmHead::kVocabParallel;
}

// The tensor-parallel shards of the ranks `keep` (all of them, or under MPI
// this process's), cut layer by layer as the loader completes each, so the
// whole model is never in memory at once.
Result<std::vector<LlamaWeights>> load_shards(const ModelSource& src, const ModelOptions& o, uint64_t seed, int n,
                                              const std::vector<int>& keep) {
  Result<ModelConfig> shard = shard_config(src.config, n);
  if (!shard) return shard.error();
  if (n == 1) {
    Result<LlamaWeights> whole = load_weights(src, o, seed);
    if (!whole) return whole.error();
    std::vector<LlamaWeights> one;
    one.push_back(std::move(*whole));
    return one;
  }
  std::vector<LlamaWeights> shards(keep.size());
  const LayerHook cut = [&](int64_t, LayerWeights& layer) -> Status {
    for (size_t i = 0; i < keep.size(); ++i) {
      Result<LayerWeights> s = shard_layer(layer, src.config, keep[i], n);
      if (!s) return s.error();
      shards[i].layers.push_back(std::move(*s));
    }
    layer = LayerWeights{};
    return Status::success();
  };
  // The final norm is replicated. Vocab-parallel ranks keep their rows of the embedding and of an untied LM head
  // (the last tensor loaded, so cutting it here peaks no higher than a hook would); a tied head is the embedding.
  Result<LlamaWeights> rest = load_weights(src, o, seed, cut);
  if (!rest) return rest.error();
  const bool split = lm_head_of(o) == LmHead::kVocabParallel;
  for (size_t i = 0; i < keep.size(); ++i) {
    shards[i].config = *shard;
    shards[i].final_norm = rest->final_norm;
    if (split) {
      shards[i].vocab = vocab_split(src.config.vocab_size, keep[i], n);
      shards[i].embed = vocab_rows(rest->embed, shards[i].vocab);
      if (!rest->lm_head.empty()) shards[i].lm_head = vocab_rows(rest->lm_head, shards[i].vocab);
    } else if (i + 1 == keep.size()) {
      shards[i].embed = std::move(rest->embed);
      shards[i].lm_head = std::move(rest->lm_head);
    } else {
      shards[i].embed = rest->embed;
      shards[i].lm_head = rest->lm_head;
    }
  }
  return shards;
}

}  // namespace

std::vector<int32_t> eos_ids_of(const ModelSource& src) {
  std::vector<int32_t> eos(src.config.eos_token_ids.begin(), src.config.eos_token_ids.end());
  if (src.tokenizer && src.tokenizer->eos_id() >= 0) eos.push_back(src.tokenizer->eos_id());
  std::sort(eos.begin(), eos.end());
  eos.erase(std::unique(eos.begin(), eos.end()), eos.end());
  return eos;
}

namespace {

bool kv_cache_fp8(const EngineOptions& options) {
  return options.kv_cache_dtype == "fp8" || options.kv_cache_dtype == "fp8_e4m3";
}

// The CPU runner: float32 activations on the host, multiplied by quantized
// weights with 8-bit activations (--dtype auto) or exactly (--dtype float32);
// the KV pool from --kv-cache-memory-bytes.
Result<std::unique_ptr<ModelRunner>> make_cpu_runner(const ModelSource& src, const ModelOptions& model,
                                                     const EngineOptions& options, int64_t max_model_len) {
  if (model.dtype != "auto" && model.dtype != "float32")
    return Error{"--dtype " + model.dtype +
                 ": the CPU runner computes in float32, with 8-bit activations for quantized weights (--dtype auto) "
                 "or without (--dtype float32, exact)"};
  if (model.quantization == "fp8")
    return Error{"--quantization fp8 needs an NVIDIA GPU of compute capability 8.9 or newer; the CPU runner reads "
                 "the model's own weight types (GGUF blocks with 8-bit activations, or --dtype float32)"};
  if (options.kv_cache_dtype == "bfloat16")
    return Error{"--kv-cache-dtype bfloat16: the CPU runner's KV cache is float32 (auto) or fp8"};
  const bool fp8_cache = kv_cache_fp8(options);
  const int tp = model.tensor_parallel_size;
  Result<ModelConfig> shard = shard_config(src.config, tp);  // checked before the weights load
  if (!shard) return shard.error();
  if (model.process_group != nullptr && model.process_group->size() != tp)
    return Error{"the launcher started " + std::to_string(model.process_group->size()) +
                 " ranks for --tensor-parallel-size " + std::to_string(tp) + ": they must be equal"};
  std::vector<int> keep;
  for (int r = 0; r < tp; ++r)
    if (model.process_group == nullptr || model.process_group->rank() == r) keep.push_back(r);
  auto shards = load_shards(src, model, static_cast<uint64_t>(options.seed), tp, keep);
  if (!shards) return shards.error();
  const int32_t block = options.block_size;
  // Every rank holds its KV heads' share of each block.
  const int64_t per_block = CpuModelRunner::kv_bytes_per_token(*shard, fp8_cache) * tp * block;
  int64_t blocks = options.num_gpu_blocks_override;
  if (blocks <= 0) {
    const int64_t budget = options.kv_cache_memory_bytes > 0 ? options.kv_cache_memory_bytes : int64_t{1} << 30;
    // Never more than every sequence at full length could use.
    const int64_t useful = static_cast<int64_t>(options.max_num_seqs) * ((max_model_len + block - 1) / block);
    blocks = std::min(budget / per_block, useful);
  }
  if (blocks < 1) return Error{"the KV cache holds no block: raise --kv-cache-memory-bytes"};
  if (blocks > INT32_MAX) blocks = INT32_MAX;
  if (!shards->empty() && has_fp8(shards->front())) {
    spdlog::info("FP8 checkpoint: the CPU runner computes with its weights dequantized to float32");
    for (LlamaWeights& w : *shards) dequantize_fp8(w);
  }
  spdlog::info("KV cache: {} blocks of {} tokens ({:.1f} MB, {} tokens, {})", blocks, block,
               blocks * per_block / 1e6, blocks * block,
               fp8_cache ? "fp8 e4m3: a quarter of float32's bytes a token" : "float32");
  auto runner = CpuModelRunner::from_shards(std::move(*shards), src.config, options.num_threads, blocks, block,
                                            eos_ids_of(src), model.process_group);
  if (!runner) return runner.error();
  if (fp8_cache) (*runner)->use_fp8_kv_cache();
  if (fp8_cache && options.calculate_kv_scales) (*runner)->calculate_kv_scales();
  const bool exact = model.dtype == "float32";
  (*runner)->set_precision(exact ? CpuPrecision::kExact : CpuPrecision::kFast);
  spdlog::info("CPU precision: {} ({})",
               exact ? "exact, float32 activations (--dtype float32)"
                     : "fast, 8-bit activations for Q8_0/Q4_0/Q4_1 weights and vectorized attention (--dtype float32 "
                       "for exact)",
               cpu_isa_name(best_cpu_isa()));
  if (tp > 1)
    spdlog::info("tensor parallelism: {} ranks ({}), {} attention heads, {} KV heads and an MLP width of {} each; "
                 "vocabulary (embedding and LM head) {}",
                 tp, model.process_group != nullptr ? model.process_group->kind() : "threads of this process",
                 shard->num_heads, shard->num_kv_heads, shard->intermediate_size, model.lm_head);
  return std::unique_ptr<ModelRunner>(std::move(*runner));
}

#ifdef EMBER_HAVE_CUDA
// A GPU rank of a process group (MPI or TCP), its shard alone loaded. Its GPU:
// its local rank among the ranks on its host (ProcessGroup::local_rank), or
// GPU 0 when the process sees only one (a launcher that hands each process its
// own GPU through CUDA_VISIBLE_DEVICES).
Result<std::unique_ptr<ModelRunner>> make_gpu_process_rank(const ModelSource& src, const ModelOptions& model,
                                                           const EngineOptions& options, CudaRunnerOptions o) {
  ProcessGroup& group = *model.process_group;
  const int tp = model.tensor_parallel_size;
  if (group.size() != tp)
    return Error{"the launcher started " + std::to_string(group.size()) + " ranks for --tensor-parallel-size " +
                 std::to_string(tp) + ": they must be equal"};
  if (Result<ModelConfig> s = shard_config(src.config, tp); !s) return s.error();  // before the weights load
  const std::string who = "tensor-parallel rank " + std::to_string(group.rank());
  const int visible = static_cast<int>(cuda_devices().size());
  const int local = group.local_rank();
  if (visible == 0) return Error{who + ": no CUDA GPU visible to this process"};
  if (visible > 1 && local >= visible)
    return Error{who + " is rank " + std::to_string(local) + " on its host, which has " + std::to_string(visible) +
                 " GPUs: start at most one rank per GPU on each host"};
  o.device = visible == 1 ? 0 : local;
  spdlog::info("tensor parallelism: rank {} of {} ({}) on GPU {}, NCCL between the ranks", group.rank(), tp,
               group.kind(), o.device);
  if (model.load_format == "dummy") {
    spdlog::info("random weights on the GPU (--load-format dummy, seed {})", options.seed);
    return make_cuda_process_group_runner(nullptr, src.config, o, group);
  }
  auto shards = load_shards(src, model, static_cast<uint64_t>(options.seed), tp, {group.rank()});
  if (!shards) return shards.error();
  return make_cuda_process_group_runner(&shards->front(), src.config, o, group);
}

Result<std::unique_ptr<ModelRunner>> make_gpu_runner(const ModelSource& src, const ModelOptions& model,
                                                     const EngineOptions& options, int64_t max_model_len,
                                                     int32_t max_num_batched_tokens, int32_t max_logits_per_seq) {
  if (model.dtype != "auto" && model.dtype != "bfloat16")
    return Error{"--dtype " + model.dtype + ": the CUDA runner computes in bfloat16 (use --dtype auto or bfloat16)"};
  if (options.kv_cache_dtype == "float32")
    return Error{"--kv-cache-dtype float32: the CUDA runner's KV cache is bfloat16 (auto) or fp8"};
  CudaRunnerOptions o;
  o.kv_cache_fp8 = kv_cache_fp8(options);
  o.calculate_kv_scales = options.calculate_kv_scales;
  o.block_size = options.block_size;
  o.max_num_batched_tokens = max_num_batched_tokens;
  o.max_num_seqs = options.max_num_seqs;
  o.max_model_len = max_model_len;
  o.max_logits_per_seq = max_logits_per_seq;
  o.gpu_memory_utilization = options.gpu_memory_utilization;
  o.num_gpu_blocks_override = options.num_gpu_blocks_override;
  o.enforce_eager = options.enforce_eager;
  o.quantize_fp8 = model.quantization == "fp8";
  if (o.quantize_fp8) spdlog::info("--quantization fp8: layer weights FP8 E4M3, a scale per output channel");
  o.dummy_seed = static_cast<uint64_t>(options.seed);
  o.eos_token_ids = eos_ids_of(src);
  o.lm_head = lm_head_of(model);
  o.collective_timeout_s = model.collective_timeout_s;
  const int tp = model.tensor_parallel_size;
  if (model.process_group != nullptr) return make_gpu_process_rank(src, model, options, o);
  if (tp > 1) {
    if (Result<ModelConfig> s = shard_config(src.config, tp); !s) return s.error();  // before the weights load
    spdlog::info("tensor parallelism: {} GPUs of this process, NCCL between them", tp);
  }
  if (model.load_format == "dummy") {
    spdlog::info("random weights on the GPU (--load-format dummy, seed {})", options.seed);
    if (tp > 1) return make_cuda_tensor_parallel_runner(nullptr, src.config, o, tp);
    return make_cuda_model_runner_dummy(src.config, o);
  }
  auto weights = load_weights(src, model, static_cast<uint64_t>(options.seed));
  if (!weights) return weights.error();
  if (tp > 1) return make_cuda_tensor_parallel_runner(&*weights, src.config, o, tp);
  return make_cuda_model_runner(*weights, o);
}
#endif

}  // namespace

namespace {

// The draft model of speculative decoding: any model ember loads, with the
// target's vocabulary. Its tokenizer is the target's (--tokenizer, else the
// target's own files) unless it ships one; a config without weights gets
// random ones (as --load-format dummy).
Result<std::shared_ptr<Proposer>> make_draft_proposer(const ModelSource& target, const SpeculativeConfig& spec,
                                                      const ModelOptions& model, const EngineOptions& options,
                                                      int64_t max_model_len, int32_t max_batched,
                                                      const std::string& device) {
  spdlog::info("loading the draft model {}", spec.model);
  auto draft = open_model_source(spec.model, model.tokenizer);
  if (!draft) draft = open_model_source(spec.model, model.tokenizer.empty() ? target.path : model.tokenizer);
  if (!draft) return Error{"draft model: " + draft.error().message};
  const ModelConfig& d = draft->config;
  const ModelConfig& t = target.config;
  if (d.vocab_size != t.vocab_size)
    return Error{"draft model " + spec.model + ": vocabulary of " + std::to_string(d.vocab_size) +
                 " tokens, the target's has " + std::to_string(t.vocab_size)};
  if (draft->tokenizer && target.tokenizer) {
    for (int32_t id = 0; id < static_cast<int32_t>(t.vocab_size); ++id) {
      if (draft->tokenizer->token_bytes(id) != target.tokenizer->token_bytes(id))
        return Error{"draft model " + spec.model + ": token " + std::to_string(id) +
                     " differs from the target's (the draft needs the target's tokenizer)"};
    }
  }
  if (d.max_position_embeddings < max_model_len)
    return Error{"draft model " + spec.model + ": its context of " + std::to_string(d.max_position_embeddings) +
                 " tokens is shorter than --max-model-len " + std::to_string(max_model_len)};
  ModelOptions draft_options = model;
  if (draft->format == ModelFormat::kConfigOnly) draft_options.load_format = "dummy";
  draft_options.tensor_parallel_size = 1;  // a draft is small: it runs whole, beside rank 0
  draft_options.process_group = nullptr;
  Result<std::unique_ptr<ModelRunner>> runner = Error{"unknown device " + device};
  if (device == "cpu") {
    runner = make_cpu_runner(*draft, draft_options, options, max_model_len);
  } else {
#ifdef EMBER_HAVE_CUDA
    // Loaded before the target, the draft takes its bf16 weights and a tenth of the device for its activations and
    // KV cache; the target then gives its KV cache what --gpu-memory-utilization leaves.
    EngineOptions draft_engine = options;
    draft_engine.num_gpu_blocks_override = 0;
    const std::vector<CudaDeviceInfo> devices = cuda_devices();
    if (!devices.empty() && devices[0].total_memory > 0) {
      const double total = static_cast<double>(devices[0].total_memory);
      const double weights = static_cast<double>(dummy_weights_bytes(d)) / 2;  // float32 sizes, bf16 on the device
      draft_engine.gpu_memory_utilization = std::min(options.gpu_memory_utilization / 2, (weights + 0.1 * total) / total);
    }
    // (2 logits a sequence: its catch-up steps take the last two positions, and replay graphs captured for them)
    runner = make_gpu_runner(*draft, draft_options, draft_engine, max_model_len, max_batched, 2);
#endif
  }
  if (!runner) return Error{"draft model: " + runner.error().message};
  spdlog::info("draft model: {} layers, hidden {}; {} proposals a step", d.num_layers, d.hidden_size,
               spec.num_speculative_tokens);
  return std::shared_ptr<Proposer>(std::make_shared<DraftModelProposer>(std::move(*runner), max_batched));
}

}  // namespace

namespace {

int32_t max_batched_of(const EngineOptions& options, const std::string& device) {
  return static_cast<int32_t>(
      options.max_num_batched_tokens > 0 ? options.max_num_batched_tokens : (device == "cpu" ? 512 : 8192));
}

}  // namespace

Result<WorkerRank> make_worker_rank(const ModelSource& src, const ModelOptions& model, const EngineOptions& options,
                                    const std::string& device) {
  const int64_t max_model_len = model.max_model_len > 0 ? model.max_model_len : src.config.max_position_embeddings;
  WorkerRank w;
  if (device == "cpu") {
    auto runner = make_cpu_runner(src, model, options, max_model_len);
    if (!runner) return runner.error();
    auto* cpu = static_cast<CpuModelRunner*>(runner->get());
    w.serve_rank_steps = [cpu] { cpu->serve_rank_steps(); };
    w.runner = std::move(*runner);
    return w;
  }
#ifdef EMBER_HAVE_CUDA
  // Built as rank 0's engine builds its runner: the same step limits, so the same graphs and buffers.
  auto spec = parse_speculative_config(model.speculative_config, model.speculative_model, model.num_speculative_tokens);
  if (!spec) return spec.error();
  auto runner = make_gpu_runner(src, model, options, max_model_len, max_batched_of(options, device),
                                1 + spec->num_speculative_tokens);
  if (!runner) return runner.error();
  w.serve_rank_steps = [r = runner->get(), g = model.process_group] { serve_cuda_rank_steps(*r, *g); };
  w.runner = std::move(*runner);
  return w;
#else
  return Error{"this ember was built without CUDA"};
#endif
}

Result<std::unique_ptr<Engine>> start_engine(const ModelSource& src, const ModelOptions& model,
                                             const EngineOptions& options, const std::string& device,
                                             int32_t max_queue_len) {
  auto spec = parse_speculative_config(model.speculative_config, model.speculative_model, model.num_speculative_tokens);
  if (!spec) return spec.error();
  const ModelConfig& c = src.config;
  const int64_t max_model_len = model.max_model_len > 0 ? model.max_model_len : c.max_position_embeddings;
  if (max_model_len > c.max_position_embeddings)
    spdlog::warn("--max-model-len {} is beyond the model's {} positions", max_model_len, c.max_position_embeddings);
  if (options.calculate_kv_scales && !kv_cache_fp8(options))
    spdlog::warn("--calculate-kv-scales does nothing without --kv-cache-dtype fp8 (the cache has no scales)");
  else if (options.calculate_kv_scales)
    spdlog::info("--calculate-kv-scales: the first step sets each layer's k_scale and v_scale from its own K and V "
                 "(max|k| / 200, max|v| / 100)");
  const int32_t max_batched = max_batched_of(options, device);
  // The draft first: on a GPU the target's KV cache takes what is left.
  std::shared_ptr<Proposer> draft;
  if (spec->method == SpeculativeConfig::Method::kDraftModel) {
    auto made = make_draft_proposer(src, *spec, model, options, max_model_len, max_batched, device);
    if (!made) return made.error();
    draft = std::move(*made);
  }

  Result<std::unique_ptr<ModelRunner>> runner = Error{"unknown device " + device};
  if (device == "cpu") {
    runner = make_cpu_runner(src, model, options, max_model_len);
  } else {
#ifdef EMBER_HAVE_CUDA
    runner = make_gpu_runner(src, model, options, max_model_len, max_batched, 1 + spec->num_speculative_tokens);
#else
    runner = Error{"this ember was built without CUDA"};
#endif
  }
  if (!runner) return runner.error();
  const int64_t blocks = std::min<int64_t>((*runner)->num_blocks(), INT32_MAX);

  EngineConfig ec;
  SchedulerConfig& sc = ec.scheduler;
  sc.max_num_seqs = options.max_num_seqs;
  sc.max_num_batched_tokens = max_batched;
  sc.block_size = options.block_size;
  sc.num_blocks = static_cast<int32_t>(blocks);
  sc.max_model_len = static_cast<int32_t>(max_model_len);
  sc.enable_prefix_caching = options.enable_prefix_caching;
  sc.enable_chunked_prefill = options.enable_chunked_prefill;
  sc.policy = options.scheduling_policy == "priority" ? SchedulerConfig::kPriority : SchedulerConfig::kFcfs;
  if (std::string bad = validate(sc); !bad.empty()) return Error{"scheduler: " + bad};
  ec.max_queue_len = max_queue_len;
  ec.seed = static_cast<uint64_t>(options.seed);
  ec.async_scheduling = options.async_scheduling < 0 ? device != "cpu" : options.async_scheduling == 1;
  if (model.process_group != nullptr && device != "cpu" && ec.async_scheduling) {
    // Only rank 0 samples: the other processes' GPUs never hold the tokens a step would read there.
    if (options.async_scheduling == 1) spdlog::warn("--async-scheduling is off with GPU ranks in several processes");
    ec.async_scheduling = false;
  }
  ec.speculative = *spec;
  ec.proposer = std::move(draft);
  if (spec->enabled()) {
    // Proposals need the previous step's tokens (engine.h).
    if (options.async_scheduling == 1) spdlog::warn("--async-scheduling is off while speculative decoding is on");
    ec.async_scheduling = false;
    spdlog::info("speculative decoding: {}, {} tokens per step{}", method_name(spec->method),
                 spec->num_speculative_tokens,
                 spec->method == SpeculativeConfig::Method::kNgram
                     ? fmt::format(" (n-grams of {} to {} tokens)", spec->prompt_lookup_min, spec->prompt_lookup_max)
                     : std::string());
  }

  spdlog::info("engine on {}: max model len {}, max {} seqs, {} tokens/step, async scheduling {}", device,
               max_model_len, sc.max_num_seqs, sc.max_num_batched_tokens, ec.async_scheduling ? "on" : "off");
  return std::make_unique<Engine>(ec, std::move(*runner), *src.tokenizer, eos_ids_of(src));
}

}  // namespace ember
