// `ember generate`: offline generation through the engine (the same scheduler,
// runner and sampler as `ember serve`).
//  --prompt TEXT:       the text is streamed as it is produced, then a line of
//                       prompt tokens, generated tokens, time to first token
//                       and decode tokens/s.
//  --prompts-file FILE: every prompt at once (one per line), each completion
//                       printed in order, then request and token throughput
//                       and the decode rate after every request's first token.

#include "cli/generate.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <thread>

#include <spdlog/spdlog.h>

#include "cli/engine_setup.h"
#include "models/chat/chat_template.h"

namespace ember {
namespace {

using Seconds = std::chrono::duration<double>;

Result<std::vector<int32_t>> encode_prompt(const ModelSource& src, const std::string& text, bool chat) {
  if (!chat) return src.tokenizer->encode(text, /*add_special=*/true);
  if (src.chat_template.empty()) return Error{src.path + ": the model has no chat template (--chat)"};
  auto tmpl = ChatTemplate::parse(src.chat_template);
  if (!tmpl) return Error{"chat template: " + tmpl.error().message};
  ChatTemplateOptions opt;
  const Tokenizer& tok = *src.tokenizer;
  if (tok.bos_id() >= 0) opt.bos_token = tok.token_bytes(tok.bos_id());
  if (tok.eos_id() >= 0) opt.eos_token = tok.token_bytes(tok.eos_id());
  auto rendered = tmpl->render(nlohmann::json::array({{{"role", "user"}, {"content", text}}}), opt);
  if (!rendered) return Error{"chat template: " + rendered.error().message};
  // The template writes BOS itself when the model wants one (as vLLM: no
  // special tokens added to a rendered chat).
  return tok.encode(*rendered, /*add_special=*/false);
}

SamplingParams params_of(const GenerateOptions& o) {
  SamplingParams p;
  p.max_tokens = o.max_tokens;
  p.temperature = static_cast<float>(o.temperature);
  p.top_p = static_cast<float>(o.top_p);
  p.top_k = o.top_k;
  if (o.sampling_seed) p.seed = static_cast<uint64_t>(*o.sampling_seed);
  p.ignore_eos = o.ignore_eos;
  p.stop = o.stop;
  return p;
}

}  // namespace

int generate(const ModelSource& src, const GenerateOptions& o, const std::string& device) {
  std::vector<std::string> prompts;
  if (!o.prompts_file.empty()) {
    std::ifstream in(o.prompts_file);
    if (!in) {
      spdlog::error("{}: cannot open", o.prompts_file);
      return 2;
    }
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) prompts.push_back(line);
    if (prompts.empty()) {
      spdlog::error("{}: no prompts (one per line)", o.prompts_file);
      return 2;
    }
  } else {
    prompts.push_back(o.prompt);
  }
  const SamplingParams params = params_of(o);
  if (Status s = params.validate(static_cast<int32_t>(src.config.vocab_size)); !s) {
    spdlog::error("{}", s.error().message);
    return 2;
  }
  std::vector<EngineRequest> requests;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto ids = encode_prompt(src, prompts[i], o.chat);
    if (!ids) {
      spdlog::error("{}", ids.error().message);
      return 2;
    }
    EngineRequest r;
    r.external_id = "gen-" + std::to_string(i);
    r.prompt_ids = std::move(ids).value();
    r.params = params;
    requests.push_back(std::move(r));
  }

  auto engine = start_engine(src, o.model, o.engine, device, static_cast<int32_t>(prompts.size()) + 1);
  if (!engine) {
    spdlog::error("{}", engine.error().message);
    return 1;
  }
  for (EngineRequest& r : requests) {
    if (auto bad = check_request_limits(r.prompt_ids, r.params.max_tokens, (*engine)->request_limits(),
                                        r.params.max_tokens)) {
      spdlog::error("{}: {}", r.external_id, bad->message);
      return 2;
    }
  }
  const auto t0 = Clock::now();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (EngineRequest& r : requests) {
    AddResult a = (*engine)->add(r);
    if (a.code != AddResult::Code::kOk) {
      spdlog::error("{}: {}", r.external_id, a.error);
      return 2;
    }
    streams.push_back(a.stream);
  }

  // Every stream is polled in turn, so that each delta's arrival is timed: the
  // decode rate counts the tokens after the moment every request had its first
  // one (for one prompt: its time to first token), prefill excluded; a batch's
  // steady rate, only those until the first request finished (the whole batch
  // running: requests that finish apart leave a tail of smaller steps).
  const bool stream_text = prompts.size() == 1;
  std::vector<std::string> texts(streams.size());
  std::vector<int64_t> generated(streams.size(), 0);
  std::vector<bool> started(streams.size(), false);
  size_t num_started = 0;
  Clock::time_point all_started{}, first_done{};
  int64_t generated_at_start = 0, generated_at_first_done = -1;
  const auto total = [&] {
    int64_t sum = 0;
    for (const int64_t g : generated) sum += g;
    return sum;
  };
  for (size_t live = streams.size(); live > 0;) {
    live = 0;
    bool got = false;
    for (size_t i = 0; i < streams.size(); ++i) {
      if (streams[i]->done()) continue;
      for (const SequenceDelta& d : streams[i]->pop(std::chrono::milliseconds(0))) {
        got = true;
        generated[i] = d.num_output_tokens;
        texts[i] += d.text;
        if (!started[i] && !d.token_ids.empty()) {
          started[i] = true;
          if (++num_started == streams.size()) {
            all_started = Clock::now();
            generated_at_start = total();
          }
        }
        if (stream_text) {
          std::fputs(d.text.c_str(), stdout);
          std::fflush(stdout);
        }
      }
      if (!streams[i]->done()) ++live;
    }
    // At the end of the sweep that saw the first request finish, so that the
    // other requests' tokens of the same step are counted.
    if (generated_at_first_done < 0 && num_started == streams.size() && live < streams.size()) {
      first_done = Clock::now();
      generated_at_first_done = total();
    }
    // Idle: a millisecond's wait keeps the timing within ~1 ms of a run of
    // seconds without a sweep over every stream's lock each 100 us, which a
    // batch of thousands of prompts on the CPU would pay in compute.
    if (!got && live > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    if (auto err = streams[i]->error()) {
      spdlog::error("{}: {}", requests[i].external_id, *err);
      return 1;
    }
  }
  const auto t1 = Clock::now();
  int64_t total_prompt = 0, total_generated = 0;
  for (size_t i = 0; i < streams.size(); ++i) {
    total_prompt += static_cast<int64_t>(requests[i].prompt_ids.size());
    total_generated += generated[i];
  }
  const auto rate = [](int64_t tokens, Clock::time_point from, Clock::time_point to) {
    const double s = Seconds(to - from).count();
    return tokens > 0 && s > 0 ? static_cast<double>(tokens) / s : 0.0;
  };
  const bool all = num_started == streams.size();
  const double decode_rate = all ? rate(total_generated - generated_at_start, all_started, t1) : 0.0;
  const double steady_rate = all && generated_at_first_done >= 0
                                 ? rate(generated_at_first_done - generated_at_start, all_started, first_done)
                                 : 0.0;
  if (stream_text) {
    const double ttft = num_started > 0 ? Seconds(all_started - t0).count() : 0.0;
    std::printf("\n\nprompt tokens: %lld, generated tokens: %lld, time to first token: %.3f s, decode: %.1f tokens/s\n",
                static_cast<long long>(total_prompt), static_cast<long long>(generated[0]), ttft, decode_rate);
  } else {
    for (size_t i = 0; i < texts.size(); ++i)
      std::printf("=== %zu: %s\n%s\n\n", i, prompts[i].c_str(), texts[i].c_str());
    const double s = Seconds(t1 - t0).count();
    std::printf(
        "requests: %zu, prompt tokens: %lld, generated tokens: %lld, time: %.2f s, throughput: %.2f requests/s, "
        "%.1f output tokens/s, %.1f total tokens/s, decode after every first token: %.1f tokens/s, "
        "steady decode (every request running): %.1f tokens/s\n",
        texts.size(), static_cast<long long>(total_prompt), static_cast<long long>(total_generated), s,
        texts.size() / s, total_generated / s, (total_prompt + total_generated) / s, decode_rate, steady_rate);
  }
  const EngineMetrics m = (*engine)->metrics();
  if (m.spec_decode_enabled && m.spec_decode_num_drafts_total > 0) {
    const double drafts = static_cast<double>(m.spec_decode_num_drafts_total);
    spdlog::info("speculative decoding: {} verification runs, {} of {} proposed tokens accepted ({:.1f}%), mean "
                 "acceptance length {:.2f}",
                 m.spec_decode_num_drafts_total, m.spec_decode_num_accepted_tokens_total,
                 m.spec_decode_num_draft_tokens_total,
                 100.0 * static_cast<double>(m.spec_decode_num_accepted_tokens_total) /
                     static_cast<double>(m.spec_decode_num_draft_tokens_total),
                 1.0 + static_cast<double>(m.spec_decode_num_accepted_tokens_total) / drafts);
  }
  (*engine)->shutdown(std::chrono::milliseconds(0));
  return 0;
}

}  // namespace ember
