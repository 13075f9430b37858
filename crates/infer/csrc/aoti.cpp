// A C interface over libtorch's AOTInductor package loader
// (torch::inductor::AOTIModelPackageLoader), for crates/infer/src/runtime/aoti.rs.
//
// Tensors cross as `at::Tensor*`, the handle tch's C API uses, so Rust wraps
// them as tch tensors without a copy. Every function catches what libtorch
// throws and returns its message as a string the caller frees with
// wsiseg_aoti_free_string (null: success); nothing throws across the
// boundary.

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {

char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.data(), s.size());
    out[s.size()] = '\0';
  }
  return out;
}

// The message of the exception being handled; c10::Error without its
// C++ backtrace.
char* current_error() {
  try {
    throw;
  } catch (const c10::Error& e) {
    return copy_string(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return copy_string(e.what());
  } catch (...) {
    return copy_string("unknown C++ exception");
  }
}

}  // namespace

extern "C" {

void wsiseg_aoti_free_string(char* s) { std::free(s); }

// Loads the package at `path` (model "model") for device index
// `device_index` (-1: the package's device, index 0).
char* wsiseg_aoti_load(const char* path, int device_index, void** loader) {
  *loader = nullptr;
  try {
    *loader = new torch::inductor::AOTIModelPackageLoader(
        path, "model", false, 1, static_cast<c10::DeviceIndex>(device_index));
    return nullptr;
  } catch (...) {
    return current_error();
  }
}

void wsiseg_aoti_free(void* loader) {
  delete static_cast<torch::inductor::AOTIModelPackageLoader*>(loader);
}

// The package's call spec: the pytree specs of its inputs and outputs
// (JSON, as torch.utils._pytree.treespec_dumps writes them).
char* wsiseg_aoti_call_spec(void* loader, char** in_spec, char** out_spec) {
  *in_spec = nullptr;
  *out_spec = nullptr;
  try {
    auto spec =
        static_cast<torch::inductor::AOTIModelPackageLoader*>(loader)->get_call_spec();
    if (spec.size() != 2) {
      return copy_string("its call spec has " + std::to_string(spec.size()) +
                         " parts, not 2 (inputs, outputs)");
    }
    *in_spec = copy_string(spec[0]);
    *out_spec = copy_string(spec[1]);
    return nullptr;
  } catch (...) {
    return current_error();
  }
}

// Runs the model on `n_in` tensors; writes up to `cap` new tensors (the
// caller owns them) to `outputs` and their count to `n_out`.
char* wsiseg_aoti_run(void* loader, at::Tensor* const* inputs, size_t n_in,
                      at::Tensor** outputs, size_t cap, size_t* n_out) {
  *n_out = 0;
  try {
    std::vector<at::Tensor> in;
    in.reserve(n_in);
    for (size_t i = 0; i < n_in; ++i) {
      in.push_back(*inputs[i]);
    }
    auto out = static_cast<torch::inductor::AOTIModelPackageLoader*>(loader)->run(in);
    if (out.size() > cap) {
      return copy_string("it returned " + std::to_string(out.size()) +
                         " tensors; wsiseg takes at most " + std::to_string(cap));
    }
    for (size_t i = 0; i < out.size(); ++i) {
      outputs[i] = new at::Tensor(std::move(out[i]));
    }
    *n_out = out.size();
    return nullptr;
  } catch (...) {
    return current_error();
  }
}

}  // extern "C"
