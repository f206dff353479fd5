#include "impl/checkpoint/safetensors_tensors.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include <cstring>

#include "impl/core/errors.h"

namespace qh::checkpoint {

namespace {

using format::Dtype;

struct DtypePair {
  Dtype dtype;
  c10::ScalarType type;
};

// safetensors <-> ATen, the pairs torch's own safetensors binding uses (safetensors/torch.py _TYPES).
constexpr DtypePair kPairs[] = {
    {Dtype::BOOL, c10::kBool},          {Dtype::U8, c10::kByte},
    {Dtype::I8, c10::kChar},            {Dtype::I16, c10::kShort},
    {Dtype::U16, c10::kUInt16},         {Dtype::F16, c10::kHalf},
    {Dtype::BF16, c10::kBFloat16},      {Dtype::I32, c10::kInt},
    {Dtype::U32, c10::kUInt32},         {Dtype::F32, c10::kFloat},
    {Dtype::C64, c10::kComplexFloat},   {Dtype::F64, c10::kDouble},
    {Dtype::I64, c10::kLong},           {Dtype::U64, c10::kUInt64},
    {Dtype::F8_E4M3, c10::kFloat8_e4m3fn},     {Dtype::F8_E5M2, c10::kFloat8_e5m2},
    {Dtype::F8_E4M3FNUZ, c10::kFloat8_e4m3fnuz}, {Dtype::F8_E5M2FNUZ, c10::kFloat8_e5m2fnuz},
};

std::vector<int64_t> sizes_of(const format::TensorInfo& info, const std::string& file) {
  std::vector<int64_t> sizes;
  for (std::uint64_t d : info.shape) {
    if (d > std::uint64_t(INT64_MAX)) {
      throw ShapeError(Where{.file = file, .tensor = info.name}, "dimensions must fit in int64 for ATen",
                       "at most 2^63 - 1", std::to_string(d));
    }
    sizes.push_back(int64_t(d));
  }
  return sizes;
}

}  // namespace

c10::ScalarType scalar_type_of(const format::TensorInfo& info, const std::string& file) {
  for (const DtypePair& p : kPairs) {
    if (p.dtype == info.dtype) return p.type;
  }
  throw FormatError(FormatError::Code::InvalidDtype, Where{.file = file, .tensor = info.name},
                    "dtype has no ATen equivalent; read it as raw bytes through qh::format instead",
                    "a dtype torch's safetensors loader accepts", std::string(format::dtype_name(info.dtype)));
}

format::Dtype dtype_of(c10::ScalarType type, const std::string& tensor) {
  for (const DtypePair& p : kPairs) {
    if (p.type == type) return p.dtype;
  }
  throw ConfigError(Where{.tensor = tensor}, "safetensors cannot store this dtype", "a safetensors dtype",
                    c10::toString(type));
}

at::Tensor load_tensor(const std::shared_ptr<const format::SafetensorsFile>& file, const format::TensorInfo& info,
                       c10::Device device) {
  const auto type = scalar_type_of(info, file->path());
  const auto sizes = sizes_of(info, file->path());
  const auto options = at::TensorOptions().dtype(type);
  if (device.is_meta()) return at::empty(sizes, options.device(device));
  const std::span<std::byte> bytes = file->bytes(info);
  const auto address = reinterpret_cast<std::uintptr_t>(bytes.data());
  if (address % c10::elementSize(type) != 0) {
    // A writer that does not sort by alignment can leave a tensor at an odd offset; ATen kernels assume aligned
    // data, so copy instead of viewing.
    at::Tensor copy = at::empty(sizes, options);
    std::memcpy(copy.data_ptr(), bytes.data(), bytes.size());
    return device.is_cpu() ? copy : copy.to(device);
  }
  // The deleter holds the file (and so the mapping) for as long as the view exists.
  at::Tensor view = at::from_blob(
      bytes.data(), sizes, [keep = file](void*) {}, options);
  return device.is_cpu() ? view : view.to(device);
}

at::Tensor load_tensor(const std::shared_ptr<const format::SafetensorsFile>& file, const std::string& name,
                       c10::Device device) {
  return load_tensor(file, file->tensor(name), device);
}

std::map<std::string, at::Tensor> load_all(const std::string& path, c10::Device device) {
  const auto file = format::SafetensorsFile::open(path);
  std::map<std::string, at::Tensor> out;
  for (const format::TensorInfo& info : file->header().tensors) out[info.name] = load_tensor(file, info, device);
  return out;
}

void save_tensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                  const std::map<std::string, std::string>& metadata) {
  std::vector<at::Tensor> host;  // keeps the CPU copies alive until the file is written
  std::vector<format::TensorData> data;
  for (const auto& [name, tensor] : tensors) {
    if (tensor.is_meta()) {
      throw ConfigError(Where{.file = path, .tensor = name}, "a meta tensor has no data to save",
                        "a tensor with storage (cpu or cuda)", "device meta");
    }
    host.push_back(tensor.to(c10::kCPU).contiguous());
    const at::Tensor& h = host.back();
    format::TensorData d;
    d.name = name;
    d.dtype = dtype_of(h.scalar_type(), name);
    for (int64_t s : h.sizes()) d.shape.push_back(std::uint64_t(s));
    d.data = {static_cast<const std::byte*>(h.const_data_ptr()), h.nbytes()};
    data.push_back(std::move(d));
  }
  format::write_file(path, std::move(data), metadata);
}

}  // namespace qh::checkpoint
