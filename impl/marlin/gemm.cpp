#include "impl/marlin/gemm.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "impl/core/errors.h"
#include "impl/core/shape_text.h"
#include "impl/marlin/layout.h"

#ifdef QH_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/kernels.h"
#endif

namespace qh::marlin {

namespace {

bool aligned16(const at::Tensor& t) { return reinterpret_cast<std::uintptr_t>(t.data_ptr()) % 16 == 0; }

// One stored tensor of the layer: dtype, shape, contiguity, device and 16-byte alignment (the kernel reads 16 bytes
// at a time).
void check_tensor(const at::Tensor& t, const std::string& name, c10::ScalarType dtype,
                  const std::vector<std::int64_t>& shape, c10::Device device) {
  const Where where{.tensor = name};
  if (t.scalar_type() != dtype) {
    throw ConfigError(where, "the Marlin GEMM reads each tensor in one dtype", c10::toString(dtype),
                      c10::toString(t.scalar_type()));
  }
  if (t.sizes().vec() != shape) {
    throw ShapeError(where, "Marlin tensors have the padded layout's shape (docs/marlin.md)", shape_text(shape),
                     shape_text(t.sizes()));
  }
  if (t.device() != device) {
    throw ConfigError(where, "the GEMM's tensors share the input's device", device.str(), t.device().str());
  }
  if (!t.is_contiguous()) {
    throw ShapeError(where, "the Marlin GEMM reads contiguous tensors", "contiguous",
                     "strides " + shape_text(t.strides()));
  }
  if (!aligned16(t)) {
    throw ShapeError(where, "the Marlin GEMM reads 16 bytes at a time", "a 16-byte aligned address",
                     "an address with remainder " +
                         std::to_string(reinterpret_cast<std::uintptr_t>(t.data_ptr()) % 16) + " mod 16");
  }
}

void check_input(const at::Tensor& x, const MarlinSpec& spec, const std::string& layer) {
  const Where where{.layer = layer};
  if (x.scalar_type() != at::kHalf && x.scalar_type() != at::kBFloat16) {
    throw ConfigError(where, "the Marlin GEMM multiplies 16-bit activations", "Half or BFloat16",
                      c10::toString(x.scalar_type()));
  }
  if (x.dim() < 1 || x.size(-1) != spec.in_features) {
    throw ShapeError(where, "the input's last dimension is the layer's in_features",
                     "[..., " + std::to_string(spec.in_features) + "]", shape_text(x.sizes()));
  }
  if (x.numel() == 0) {
    throw ShapeError(where, "the Marlin GEMM needs at least one row (M = 0 launches nothing to multiply)", "M >= 1",
                     "input shape " + shape_text(x.sizes()));
  }
  if (!x.is_contiguous()) {
    throw ShapeError(where, "the Marlin GEMM reads a contiguous input", "contiguous",
                     "strides " + shape_text(x.strides()) + " for shape " + shape_text(x.sizes()));
  }
  if (!aligned16(x)) {
    throw ShapeError(where, "the Marlin GEMM reads the input 16 bytes at a time", "a 16-byte aligned address",
                     "remainder " + std::to_string(reinterpret_cast<std::uintptr_t>(x.data_ptr()) % 16) +
                         " mod 16 (a view at an odd offset? pass .clone())");
  }
}

void check_finite(const at::Tensor& t, const std::string& what, const std::string& layer, const std::string& advice) {
  const std::int64_t bad = at::logical_not(at::isfinite(t)).sum().item<std::int64_t>();
  if (bad != 0) {
    throw NumericError(Where{.layer = layer}, what, "finite values",
                       std::to_string(bad) + " of " + std::to_string(t.numel()) + " values are Inf or NaN" + advice);
  }
}

// The layer's tensors against x: B, s, perm (exactly with act-order) and bias. Returns the bias in x's dtype
// (undefined without one).
at::Tensor check_weights(const at::Tensor& x, const MarlinWeights& w, const std::string& layer) {
  const MarlinSpec& spec = w.spec;
  check_input(x, spec, layer);
  const c10::Device device = x.device();
  check_tensor(w.b, layer + ".B", at::kInt, {spec.k_padded() / 16, 2 * spec.n_padded()}, device);
  check_tensor(w.s, layer + ".s", x.scalar_type(), {spec.groups(), spec.n_padded()}, device);
  if (spec.act_order != w.perm.defined()) {
    throw ConfigError(Where{.layer = layer}, "an act-order layer has a perm tensor and only then",
                      spec.act_order ? "perm present" : "no perm", w.perm.defined() ? "perm present" : "no perm");
  }
  if (w.perm.defined()) check_tensor(w.perm, layer + ".perm", at::kInt, {spec.in_features}, device);
  if (!w.bias.defined()) return {};
  if (w.bias.sizes().vec() != std::vector<std::int64_t>{spec.out_features} || w.bias.device() != device) {
    throw ShapeError(Where{.tensor = layer + ".bias"}, "the bias has out_features values on the input's device",
                     "[" + std::to_string(spec.out_features) + "] on " + device.str(),
                     shape_text(w.bias.sizes()) + " on " + w.bias.device().str());
  }
  return w.bias.to(x.scalar_type()).contiguous();
}

// Both paths' last step: y (M, N) -> (..., N) in x's leading shape, after the overflow check the options ask for.
at::Tensor finish_output(const at::Tensor& y, const at::Tensor& x, const MarlinSpec& spec, const std::string& layer,
                         const GemmOptions& options) {
  if (options.check_finite) {
    check_finite(y, "the GEMM's output must be finite (its input was)", layer,
                 x.scalar_type() == at::kHalf ? ": the products overflow fp16 (|y| > 65504); run the layer in bf16"
                                              : ": the products overflow bf16");
  }
  std::vector<std::int64_t> out_shape = x.sizes().vec();
  out_shape.back() = spec.out_features;
  return y.reshape(out_shape);
}

// The CPU reference of the kernel: the weights it multiplies (s (q - 8) rounded once to s's dtype), products
// accumulated in float32, the bias added, one rounding to x's dtype.
at::Tensor gemm_reference(const at::Tensor& x, const MarlinWeights& w, const std::string& layer,
                          const GemmOptions& options) {
  const at::Tensor bias = check_weights(x, w, layer);
  if (w.perm.defined()) {
    const at::Tensor sorted = std::get<0>(w.perm.to(at::kLong).sort());
    if (!sorted.equal(at::arange(w.spec.in_features, sorted.options()))) {
      throw ConfigError(Where{.tensor = layer + ".perm"}, "perm is a permutation of the inputs",
                        "each of 0 .. " + std::to_string(w.spec.in_features - 1) + " once", "repeated or missing values");
    }
  }
  if (options.check_finite) check_finite(x, "the GEMM's input must be finite", layer, "");
  const std::int64_t m = x.numel() / w.spec.in_features;
  at::Tensor y = x.reshape({m, w.spec.in_features}).to(at::kFloat).matmul(dequantize(w).to(at::kFloat));
  if (bias.defined()) y = y + bias.to(at::kFloat);
  return finish_output(y.to(x.scalar_type()), x, w.spec, layer, options);
}

#ifdef QH_WITH_CUDA
// The kernel's per-tile counters: zero before each launch and left zero by it, so one zeroed buffer per (device,
// stream) serves every launch in stream order (a launch on another stream may run concurrently: its own buffer).
// Replaced by a larger zeroed one when a launch needs more tiles; dropping the old one is safe because the caching
// allocator hands its memory out again only in this stream's order, after the launches that use it.
at::Tensor tile_counters(c10::Device device, cudaStream_t stream, std::int64_t tiles) {
  static std::mutex mutex;
  static std::map<std::pair<int, cudaStream_t>, at::Tensor> buffers;
  const std::lock_guard<std::mutex> lock(mutex);
  at::Tensor& buffer = buffers[{device.index(), stream}];
  if (!buffer.defined() || buffer.numel() < tiles) {
    buffer = at::zeros({std::max<std::int64_t>(tiles, 1024)}, at::TensorOptions().dtype(at::kInt).device(device));
  }
  return buffer;
}

at::Tensor gemm_cuda(const at::Tensor& x, const MarlinWeights& w, const std::string& layer,
                     const GemmOptions& options) {
  const MarlinSpec& spec = w.spec;
  const c10::Device device = x.device();
  const at::Tensor bias = check_weights(x, w, layer);

  const std::int64_t m = x.numel() / spec.in_features;
  const kernels::DType dtype = x.scalar_type() == at::kHalf ? kernels::DType::F16 : kernels::DType::BF16;
  const cudaDeviceProp* props = at::cuda::getDeviceProperties(device.index());
  const int arch = 10 * props->major + props->minor;
  kernels::MarlinGemmPlan plan =
      kernels::marlin_gemm_plan(m, spec.out_features, spec.in_features, dtype, props->multiProcessorCount, arch);
  if (options.config >= 0) {
    if (options.config >= kernels::marlin_gemm_config_count()) {
      throw ConfigError(Where{.layer = layer}, "a forced configuration must exist",
                        "0 .. " + std::to_string(kernels::marlin_gemm_config_count() - 1),
                        std::to_string(options.config));
    }
    if (!kernels::marlin_gemm_config_runs_on(options.config, arch)) {
      throw ConfigError(Where{.layer = layer}, "a forced configuration must run on this GPU",
                        "a configuration for compute capability " + std::to_string(arch),
                        "configuration " + std::to_string(options.config) + " (needs " +
                            std::to_string(kernels::marlin_gemm_config(options.config).arch) + ")");
    }
    const int cluster = kernels::marlin_gemm_config(options.config).cluster;
    if (!kernels::marlin_gemm_config_fits(options.config, spec.out_features)) {
      throw ConfigError(Where{.layer = layer}, "a forced clustered configuration pairs up the column tiles",
                        "out_features in a multiple of " + std::to_string(cluster) + " column tiles of " +
                            std::to_string(64 * kernels::marlin_gemm_config(options.config).n_chunks),
                        "out_features = " + std::to_string(spec.out_features));
    }
    plan.config = options.config;
  }
  const int cluster = kernels::marlin_gemm_config(plan.config).cluster;
  const std::int64_t max_blocks = kernels::marlin_gemm_max_blocks(plan.config, m, spec.out_features, spec.in_features);
  // A forced block count is checked below; the plan's (made for its own configuration) is cut to a forced one's
  // (whole clusters: max_blocks is a multiple of the cluster where the configuration fits).
  const std::int64_t planned = std::min<std::int64_t>(plan.blocks, max_blocks) / cluster * cluster;
  plan.blocks = options.blocks > 0 ? options.blocks : int(std::max<std::int64_t>(cluster, planned));
  if (plan.blocks > max_blocks) {
    throw ConfigError(Where{.layer = layer}, "stream-K gives each block at least one unit and a tile at most 31 blocks",
                      "blocks <= " + std::to_string(max_blocks), "blocks = " + std::to_string(plan.blocks));
  }
  if (plan.blocks % cluster != 0) {
    throw ConfigError(Where{.layer = layer}, "a clustered configuration launches whole clusters",
                      "blocks a multiple of " + std::to_string(cluster), "blocks = " + std::to_string(plan.blocks));
  }
  if (options.check_finite) check_finite(x, "the GEMM's input must be finite", layer, "");

  const c10::cuda::CUDAGuard guard(device);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream(device.index());
  at::Tensor a = x.reshape({m, spec.in_features});
  if (w.perm.defined()) {
    at::Tensor permuted = at::empty_like(a);
    if (const cudaError_t e = kernels::launch_permute_columns(a.data_ptr(), w.perm.data_ptr<std::int32_t>(), m,
                                                              spec.in_features, permuted.data_ptr(), stream);
        e != cudaSuccess) {
      throw NumericError(Where{.layer = layer}, "the act-order permutation kernel must launch", "cudaSuccess",
                         cudaGetErrorString(e));
    }
    a = permuted;
  }
  at::Tensor y = at::empty({m, spec.out_features}, x.options());
  const at::Tensor workspace = at::empty(
      {kernels::marlin_gemm_workspace_floats(plan.config, plan.blocks, m, spec.out_features)}, x.options().dtype(at::kFloat));
  const at::Tensor counters = tile_counters(device, stream, kernels::marlin_gemm_tiles(plan.config, m, spec.out_features));

  kernels::MarlinGemmArgs args;
  args.a = a.data_ptr();
  args.b = static_cast<const std::uint32_t*>(w.b.data_ptr());
  args.s = w.s.data_ptr();
  args.bias = bias.defined() ? bias.data_ptr() : nullptr;
  args.m = m;
  args.k = spec.in_features;
  args.n = spec.out_features;
  args.k_pad = spec.k_padded();
  args.n_pad = spec.n_padded();
  args.group_size = spec.groups() > 1 ? spec.group_size : -1;
  args.dtype = dtype;
  args.c = y.data_ptr();
  args.workspace = workspace.data_ptr<float>();
  args.counters = static_cast<unsigned*>(counters.data_ptr());
  args.plan = plan;
  if (const cudaError_t e = kernels::launch_marlin_gemm(args, stream); e != cudaSuccess) {
    throw NumericError(Where{.layer = layer}, "the Marlin GEMM kernel must launch", "cudaSuccess",
                       cudaGetErrorString(e));
  }
  return finish_output(y, x, spec, layer, options);
}
#endif

}  // namespace

at::Tensor dequantize(const MarlinWeights& w) {
  const MarlinSpec& spec = w.spec;
  const std::int64_t k = spec.in_features, n = spec.out_features, kp = spec.k_padded(), np = spec.n_padded();
  const at::Tensor codes = unpack_weights(w.b.cpu(), kp, np, "").to(at::kFloat);  // rows in perm order
  const bool grouped = spec.group_size != -1;
  const at::Tensor s = unpermute_scales(w.s.cpu(), grouped, "").to(at::kFloat);
  const at::Tensor rows = grouped ? s.repeat_interleave(spec.group_size, 0) : s.expand({kp, np});  // (kp, np)
  // Symmetric 4-bit: zero point 8. B's first K rows are the real inputs (in perm order), the rest padding.
  at::Tensor out = (rows * (codes - 8)).narrow(0, 0, k).narrow(1, 0, n).to(w.s.scalar_type());
  if (spec.act_order) {
    at::Tensor original = at::empty_like(out);
    original.index_copy_(0, w.perm.cpu().to(at::kLong), out);  // row i of B is input perm[i]
    out = original;
  }
  return out.contiguous().to(w.b.device());
}

at::Tensor gemm(const at::Tensor& x, const MarlinWeights& w, const std::string& layer, const GemmOptions& options) {
  w.spec.validate(layer);
  if (!w.spec.group_size_supported()) {
    throw ConfigError(Where{.layer = layer}, "the Marlin GEMM supports group sizes -1, 32, 64 and 128",
                      "-1, 32, 64 or 128", "group_size = " + std::to_string(w.spec.group_size));
  }
  if (x.device().is_cpu()) return gemm_reference(x, w, layer, options);
  if (!x.device().is_cuda()) {
    throw ConfigError(Where{.layer = layer}, "the Marlin GEMM runs on the CPU (reference) or a CUDA device", "cpu or cuda",
                      x.device().str());
  }
#ifdef QH_WITH_CUDA
  return gemm_cuda(x, w, layer, options);
#else
  (void)options;
  throw ConfigError(Where{.layer = layer}, "the Marlin GEMM needs a build with CUDA", "QH_CUDA on", "off");
#endif
}

}  // namespace qh::marlin
