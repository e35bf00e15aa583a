#include "kernels/cuda/nccl_communicator.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <cuda_runtime.h>

#ifdef EMBER_HAVE_NCCL
#include <nccl.h>
#endif

namespace ember {

#ifdef EMBER_HAVE_NCCL
namespace {

[[noreturn]] void collective_failed(const char* what, ncclResult_t r, int rank) {
  std::fprintf(stderr, "ember: NCCL %s failed on rank %d: %s\n", what, rank, ncclGetErrorString(r));
  std::abort();
}

}  // namespace

bool nccl_available() { return true; }

Result<std::vector<std::unique_ptr<NcclCommunicator>>> NcclCommunicator::create_all(const std::vector<int>& devices) {
  const int n = static_cast<int>(devices.size());
  if (n < 1) return Error{"NCCL: no devices"};
  std::vector<ncclComm_t> comms(static_cast<size_t>(n));
  if (ncclResult_t r = ncclCommInitAll(comms.data(), n, devices.data()); r != ncclSuccess)
    return Error{std::string("NCCL: ncclCommInitAll over ") + std::to_string(n) +
                 " devices failed: " + ncclGetErrorString(r)};
  std::vector<std::unique_ptr<NcclCommunicator>> out;
  for (int r = 0; r < n; ++r)
    out.push_back(std::unique_ptr<NcclCommunicator>(new NcclCommunicator(comms[static_cast<size_t>(r)], r, n)));
  return out;
}

Result<std::string> NcclCommunicator::new_unique_id() {
  ncclUniqueId id;
  if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess)
    return Error{std::string("NCCL: ncclGetUniqueId failed: ") + ncclGetErrorString(r)};
  return std::string(id.internal, sizeof id.internal);
}

Result<std::unique_ptr<NcclCommunicator>> NcclCommunicator::create_rank(const std::string& unique_id, int rank,
                                                                        int size) {
  ncclUniqueId id;
  if (unique_id.size() != sizeof id.internal)
    return Error{"NCCL: a unique id of " + std::to_string(unique_id.size()) + " bytes (this NCCL's are " +
                 std::to_string(sizeof id.internal) + "): the ranks run different NCCL versions"};
  std::memcpy(id.internal, unique_id.data(), sizeof id.internal);
  ncclComm_t comm = nullptr;
  if (ncclResult_t r = ncclCommInitRank(&comm, size, id, rank); r != ncclSuccess)
    return Error{"NCCL: ncclCommInitRank (rank " + std::to_string(rank) + " of " + std::to_string(size) +
                 ") failed: " + ncclGetErrorString(r)};
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(comm, rank, size));
}

NcclCommunicator::~NcclCommunicator() {
  if (!aborted_.load()) ncclCommDestroy(static_cast<ncclComm_t>(comm_));
}

void NcclCommunicator::all_reduce_sum(float* data, int64_t n) {
  ncclResult_t r =
      ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat32, ncclSum, static_cast<ncclComm_t>(comm_), nullptr);
  if (r != ncclSuccess) collective_failed("all-reduce", r, rank_);
}

void NcclCommunicator::all_gather(const float* data, int64_t n, float* out) {
  ncclResult_t r =
      ncclAllGather(data, out, static_cast<size_t>(n), ncclFloat32, static_cast<ncclComm_t>(comm_), nullptr);
  if (r != ncclSuccess) collective_failed("all-gather", r, rank_);
}

void NcclCommunicator::all_reduce(Tensor& x, void* stream) {
  const ncclDataType_t type = x.dtype == DType::kBF16 ? ncclBfloat16 : ncclFloat32;
  ncclResult_t r = ncclAllReduce(x.data, x.data, static_cast<size_t>(x.numel()), type, ncclSum,
                                 static_cast<ncclComm_t>(comm_), static_cast<cudaStream_t>(stream));
  if (r != ncclSuccess) collective_failed("all-reduce", r, rank_);
}

void NcclCommunicator::all_gather(const Tensor& x, Tensor& out, void* stream) {
  ncclResult_t r = ncclAllGather(x.data, out.data, static_cast<size_t>(x.numel()), ncclFloat32,
                                 static_cast<ncclComm_t>(comm_), static_cast<cudaStream_t>(stream));
  if (r != ncclSuccess) collective_failed("all-gather", r, rank_);
}

std::string NcclCommunicator::async_error() {
  if (aborted_.load()) return {};
  ncclResult_t async = ncclSuccess;
  if (ncclResult_t r = ncclCommGetAsyncError(static_cast<ncclComm_t>(comm_), &async); r != ncclSuccess)
    return std::string("ncclCommGetAsyncError: ") + ncclGetErrorString(r);
  if (async == ncclSuccess || async == ncclInProgress) return {};
  std::string what = ncclGetErrorString(async);
  if (const char* last = ncclGetLastError(static_cast<ncclComm_t>(comm_)); last != nullptr && *last != '\0')
    what += std::string(" (") + last + ")";
  return what;
}

void NcclCommunicator::abort() {
  if (aborted_.exchange(true)) return;
  ncclCommAbort(static_cast<ncclComm_t>(comm_));
}

#else

bool nccl_available() { return false; }

Result<std::vector<std::unique_ptr<NcclCommunicator>>> NcclCommunicator::create_all(const std::vector<int>&) {
  return Error{"this ember was built without NCCL: tensor parallelism on GPUs needs it"};
}
Result<std::string> NcclCommunicator::new_unique_id() {
  return Error{"this ember was built without NCCL: tensor parallelism on GPUs needs it"};
}
Result<std::unique_ptr<NcclCommunicator>> NcclCommunicator::create_rank(const std::string&, int, int) {
  return Error{"this ember was built without NCCL: tensor parallelism on GPUs needs it"};
}
NcclCommunicator::~NcclCommunicator() = default;
void NcclCommunicator::all_reduce_sum(float*, int64_t) {}
void NcclCommunicator::all_gather(const float*, int64_t, float*) {}
void NcclCommunicator::all_reduce(Tensor&, void*) {}
void NcclCommunicator::all_gather(const Tensor&, Tensor&, void*) {}
std::string NcclCommunicator::async_error() { return {}; }
void NcclCommunicator::abort() {}

#endif

}  // namespace ember
