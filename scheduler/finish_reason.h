#pragma once
// Why a sequence stopped: the one type the scheduler (length), the engine
// (stop strings and ids, aborts) and the server (the OpenAI finish_reason)
// share. It lives in the lowest room that needs it.

namespace ember {

enum class FinishReason { kNone, kStop, kLength, kAbort };

// The OpenAI spelling: "stop", "length", "abort"; "" for kNone.
constexpr const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
    case FinishReason::kNone: break;
  }
  return "";
}

}  // namespace ember
