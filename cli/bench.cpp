// `ember bench`: load testing.
//  serve:      drive an OpenAI-compatible server over HTTP and report TTFT,
//              TPOT, ITL, E2E latency and throughput (loadgen/).
//  sweep:      `serve` once per request rate or concurrency, plotted as
//              throughput against latency.
//  throughput: the offline engine benchmark (no HTTP), to separate server
//              overhead from engine speed.
// Exit codes: 0 all requests succeeded, 1 some failed (or the engine did),
// 2 bad options or inputs.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>

#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/engine_setup.h"
#include "loadgen/dataset.h"
#include "loadgen/report.h"
#include "loadgen/runner.h"
#include "loadgen/token_counter.h"
#include "models/model_source.h"
#ifdef EMBER_HAVE_CUDA
#include "kernels/cuda/device_info.h"
#endif

namespace ember {
namespace {

using json = nlohmann::json;

std::string now_stamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

bool write_file(const std::string& path, const std::string& text, const char* what) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) {
    spdlog::error("{} {}: cannot write", what, path);
    return false;
  }
  spdlog::info("wrote {}", path);
  return true;
}

TargetOptions target_of(const BenchOptions& o) {
  TargetOptions t;
  t.base_url = o.base_url;
  t.endpoint = o.endpoint;
  t.model = o.model;
  t.api_key = o.api_key;
  t.timeout_s = o.timeout_s;
  t.ignore_eos = o.ignore_eos;
  return t;
}

DatasetOptions dataset_of(const BenchOptions& o) {
  DatasetOptions d;
  d.name = o.dataset;
  d.path = o.dataset_path;
  d.num_prompts = o.num_prompts;
  d.input_len = o.random_input_len;
  d.output_len = o.dataset == "sharegpt" ? o.sharegpt_output_len : o.random_output_len;
  d.range_ratio = o.random_range_ratio;
  d.prefix_len = o.prefix_len;
  d.num_prefix_groups = o.num_prefix_groups;
  d.seed = static_cast<uint64_t>(o.seed);
  return d;
}

std::vector<double> percentiles_of(const BenchOptions& o) {
  std::vector<double> p = {90, 95, 99};
  for (double v : o.percentiles) {
    if (v >= 0 && v <= 100 && std::find(p.begin(), p.end(), v) == p.end()) p.push_back(v);
  }
  std::sort(p.begin(), p.end());
  return p;
}

// Fills in the model name (the server's first, when not given) and builds the
// prompts. Returns false after logging an error.
bool prepare(const BenchOptions& o, TargetOptions* target, std::vector<BenchRequest>* requests) {
  auto client = OpenAiClient::create(*target);
  if (!client) {
    spdlog::error("{}", client.error().message);
    return false;
  }
  std::unique_ptr<TokenCounter> counter;
  if (!o.tokenizer.empty()) {
    auto c = local_token_counter(o.tokenizer);
    if (!c) {
      spdlog::error("{}", c.error().message);
      return false;
    }
    counter = std::move(c).value();
  }
  if (target->model.empty()) {
    auto models = (*client)->get_json("/v1/models");
    if (!models) {
      // No server to ask: keep going with no name when a local tokenizer
      // makes the prompts, so an unreachable server shows up as failed
      // requests with reasons rather than as a setup error.
      if (!counter) {
        spdlog::error("cannot find the model name (give --model): {}", models.error().message);
        return false;
      }
      spdlog::warn("GET /v1/models failed ({}); requesting without a model name", models.error().message);
    } else if (auto data = models->find("data"); data != models->end() && data->is_array() && !data->empty() &&
                                                 (*data)[0].contains("id") && (*data)[0]["id"].is_string()) {
      target->model = (*data)[0]["id"].get<std::string>();
      spdlog::info("model: {} (the server's first)", target->model);
    }
  }
  if (!counter) {
    auto c = server_token_counter(**client, target->model);
    if (!c) {
      spdlog::error("the server's /tokenize is needed for exact prompt lengths (or give --tokenizer): {}",
                    c.error().message);
      return false;
    }
    counter = std::move(c).value();
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto built = build_dataset(dataset_of(o), *counter);
  if (!built) {
    spdlog::error("{}", built.error().message);
    return false;
  }
  *requests = std::move(built).value();
  int64_t in = 0, out = 0;
  for (const auto& r : *requests) in += r.prompt_len, out += r.max_tokens;
  spdlog::info("dataset {}: {} prompts, {} input tokens, {} max output tokens ({:.1f} s to build)", o.dataset,
               requests->size(), in, out,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return true;
}

// One measured run; false if it could not start.
bool run_once(const BenchOptions& o, const TargetOptions& target, const std::vector<BenchRequest>& requests,
              double rate, int64_t concurrency, const GoodputSlo& slo, BenchRun* run) {
  RunOptions ro;
  ro.request_rate = rate;
  ro.burstiness = o.burstiness;
  ro.max_concurrency = concurrency;
  ro.num_warmups = o.num_warmups;
  ro.seed = static_cast<uint64_t>(o.seed);
  ro.progress = o.progress;
  spdlog::info("sending {} requests at {} req/s (burstiness {}), max concurrency {}", requests.size(),
               rate > 0 ? std::to_string(rate) : "inf", o.burstiness,
               concurrency > 0 ? std::to_string(concurrency) : "none");
  // The server's speculative decoding counters around the run (vLLM-style /metrics), when it has them.
  auto scrape = [&]() -> std::optional<SpecDecodeCounters> {
    auto client = OpenAiClient::create(target);
    if (!client) return std::nullopt;
    auto text = (*client)->get_text("/metrics");
    if (!text) return std::nullopt;
    return parse_spec_decode_counters(*text);
  };
  const std::optional<SpecDecodeCounters> spec_before = scrape();
  auto result = run_load(target, requests, ro);
  if (!result) {
    spdlog::error("{}", result.error().message);
    return false;
  }
  run->target = target;
  run->dataset = o.dataset;
  run->num_prompts = static_cast<int64_t>(requests.size());
  run->request_rate = rate;
  run->burstiness = o.burstiness;
  run->max_concurrency = concurrency;
  run->seed = static_cast<uint64_t>(o.seed);
  run->date = now_stamp();
  run->percentiles = percentiles_of(o);
  run->slo = slo;
  run->records = std::move(result->records);
  run->metrics = compute_metrics(run->records, result->duration_s, run->percentiles, slo);
  if (spec_before) {
    if (const auto spec_after = scrape()) run->spec_decode = spec_after->minus(*spec_before);
  }
  return true;
}

int bench_serve(const BenchOptions& o, const GoodputSlo& slo) {
  TargetOptions target = target_of(o);
  std::vector<BenchRequest> requests;
  if (!prepare(o, &target, &requests)) return 2;
  BenchRun run;
  if (!run_once(o, target, requests, o.request_rate, o.max_concurrency, slo, &run)) return 2;
  std::fputs(summary_text(run).c_str(), stdout);
  std::fflush(stdout);
  bool ok = true;
  if (!o.result_json.empty()) ok &= write_file(o.result_json, result_json(run).dump(2) + "\n", "--result-json");
  if (!o.report_html.empty()) ok &= write_file(o.report_html, html_report(run), "--report-html");
  if (!ok) return 2;
  return run.metrics.failed == 0 ? 0 : 1;
}

int bench_sweep(const BenchOptions& o, const GoodputSlo& slo) {
  if (o.sweep_rates.empty() == o.sweep_concurrencies.empty()) {
    spdlog::error("ember bench sweep: give either --request-rates or --max-concurrencies");
    return 2;
  }
  const bool by_rate = !o.sweep_rates.empty();
  const std::string swept = by_rate ? "request-rate" : "max-concurrency";
  TargetOptions target = target_of(o);
  std::vector<BenchRequest> requests;
  if (!prepare(o, &target, &requests)) return 2;
  std::vector<BenchRun> runs;
  const size_t points = by_rate ? o.sweep_rates.size() : o.sweep_concurrencies.size();
  for (size_t i = 0; i < points; ++i) {
    BenchRun run;
    const double rate = by_rate ? o.sweep_rates[i] : o.request_rate;
    const int64_t conc = by_rate ? o.max_concurrency : o.sweep_concurrencies[i];
    if (!run_once(o, target, requests, rate, conc, slo, &run)) return 2;
    std::fputs(summary_text(run).c_str(), stdout);
    runs.push_back(std::move(run));
  }
  std::fputs(sweep_summary_text(runs, swept).c_str(), stdout);
  std::fflush(stdout);
  bool ok = true;
  if (!o.result_json.empty()) {
    json j = {{"swept", swept}, {"runs", json::array()}};
    for (const BenchRun& r : runs) j["runs"].push_back(result_json(r));
    ok &= write_file(o.result_json, j.dump(2) + "\n", "--result-json");
  }
  if (!o.report_html.empty()) ok &= write_file(o.report_html, sweep_html_report(runs, swept), "--report-html");
  if (!ok) return 2;
  for (const BenchRun& r : runs) {
    if (r.metrics.failed > 0) return 1;
  }
  return 0;
}

std::string resolve_bench_device(const std::string& requested) {
#ifdef EMBER_HAVE_CUDA
  if (requested == "auto") return cuda_devices().empty() ? "cpu" : "cuda";
  return requested;
#else
  if (requested == "cuda") return "";
  return "cpu";
#endif
}

// The offline benchmark: every prompt submitted to the engine at once, as
// vLLM's `bench throughput`; prompts from the same datasets, counted with the
// model's own tokenizer.
int bench_throughput(const BenchOptions& o) {
  const std::string device = resolve_bench_device(o.engine_model.device);
  if (device.empty()) {
    spdlog::error("--device {}: not available in this build", o.engine_model.device);
    return 2;
  }
  const std::string path = o.engine_model.model.empty() ? default_model_path() : o.engine_model.model;
  auto src = open_model_source(path, o.engine_model.tokenizer);
  if (!src) {
    spdlog::error("{}", src.error().message);
    return 2;
  }
  auto counter = tokenizer_token_counter(*src->tokenizer);
  auto built = build_dataset(dataset_of(o), *counter);
  if (!built) {
    spdlog::error("{}", built.error().message);
    return 2;
  }
  std::vector<EngineRequest> requests;
  for (const BenchRequest& b : *built) {
    EngineRequest r;
    r.external_id = "bench-" + std::to_string(b.index);
    r.prompt_ids = src->tokenizer->encode(b.prompt, /*add_special=*/true);
    r.params.max_tokens = static_cast<int32_t>(b.max_tokens);
    r.params.temperature = 0;
    r.params.ignore_eos = o.ignore_eos;
    requests.push_back(std::move(r));
  }
  auto engine = start_engine(*src, o.engine_model, o.engine, device, static_cast<int32_t>(requests.size()) + 1);
  if (!engine) {
    spdlog::error("{}", engine.error().message);
    return 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const EngineRequest& r : requests) {
    AddResult a = (*engine)->add(r);
    if (a.code != AddResult::Code::kOk) {
      spdlog::error("{}: {}", r.external_id, a.error);
      return 2;
    }
    streams.push_back(a.stream);
  }
  int64_t prompt_tokens = 0, output_tokens = 0;
  for (size_t i = 0; i < streams.size(); ++i) {
    int64_t generated = 0;
    while (!streams[i]->done()) {
      for (const SequenceDelta& d : streams[i]->pop(std::chrono::milliseconds(200))) generated = d.num_output_tokens;
    }
    if (auto err = streams[i]->error()) {
      spdlog::error("{}: {}", requests[i].external_id, *err);
      return 1;
    }
    prompt_tokens += static_cast<int64_t>(requests[i].prompt_ids.size());
    output_tokens += generated;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  (*engine)->shutdown(std::chrono::milliseconds(0));
  const auto n = static_cast<double>(requests.size());
  std::printf("Throughput: %.2f requests/s, %.2f total tokens/s, %.2f output tokens/s\n"
              "Requests: %zu, prompt tokens: %lld, output tokens: %lld, elapsed: %.2f s (device %s)\n",
              n / s, static_cast<double>(prompt_tokens + output_tokens) / s, static_cast<double>(output_tokens) / s,
              requests.size(), static_cast<long long>(prompt_tokens), static_cast<long long>(output_tokens), s,
              device.c_str());
  if (!o.result_json.empty()) {
    json j = {{"date", now_stamp()},
              {"model", path},
              {"device", device},
              {"dataset", o.dataset},
              {"elapsed_time", s},
              {"num_requests", requests.size()},
              {"total_prompt_tokens", prompt_tokens},
              {"total_output_tokens", output_tokens},
              {"total_num_tokens", prompt_tokens + output_tokens},
              {"requests_per_second", n / s},
              {"tokens_per_second", static_cast<double>(prompt_tokens + output_tokens) / s},
              {"output_tokens_per_second", static_cast<double>(output_tokens) / s}};
    if (!write_file(o.result_json, j.dump(2) + "\n", "--result-json")) return 2;
  }
  return 0;
}

}  // namespace

int run_bench(const BenchOptions& options) {
  auto slo = parse_goodput(options.goodput);
  if (!slo) {
    spdlog::error("{}", slo.error().message);
    return 2;
  }
  if (options.mode == "throughput") return bench_throughput(options);
  if (options.mode == "sweep") return bench_sweep(options, *slo);
  return bench_serve(options, *slo);
}

}  // namespace ember
