// The GPU machine has no debugger: a crash of the GPU test binary prints its
// stack (binary + offset per frame; resolve with addr2line against the
// unstripped binary scripts/gpu_bundle.sh carries).
#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>

namespace {

void print_stack(int sig) {
  void* frames[64];
  const int n = backtrace(frames, 64);
  const char msg[] = "\n*** fatal signal in ember_gpu_tests; stack:\n";
  (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
  backtrace_symbols_fd(frames, n, STDERR_FILENO);
  signal(sig, SIG_DFL);
  raise(sig);
}

const bool installed = [] {
  signal(SIGSEGV, print_stack);
  signal(SIGBUS, print_stack);
  signal(SIGFPE, print_stack);
  signal(SIGABRT, print_stack);
  return true;
}();

}  // namespace
