// safetensors tensors as at::Tensor (impl/checkpoint): zero-copy CPU views that keep the mapping alive, private
// copy-on-write pages (a write through a view never reaches the file), meta tensors for building models without
// memory, refusal of dtypes ATen cannot hold, and bytes loaded straight onto the GPU checked by a kernel.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>

#include "conformance/gpu_testing.h"
#include "conformance/testing.h"
#include "impl/checkpoint/safetensors_tensors.h"
#include "impl/core/errors.h"

namespace qh::checkpoint {
namespace {

using format::Dtype;
using format::SafetensorsFile;
using testing::TempDir;

std::string write_random_file(const TempDir& dir, const std::vector<std::pair<std::string, std::vector<int64_t>>>& f32) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  std::uint64_t seed = 1;
  for (const auto& [name, shape] : f32) {
    at::manual_seed(seed++);
    tensors.emplace_back(name, at::randn(shape));
  }
  const std::string path = dir.file("random.safetensors");
  save_tensors(path, tensors);
  return path;
}

TEST(SafetensorsTensors, CpuTensorIsAViewIntoTheMapping) {
  TempDir dir;
  const auto path = write_random_file(dir, {{"a", {3, 5}}, {"b", {17}}});
  auto file = SafetensorsFile::open(path);
  const auto& info = file->tensor("a");
  at::Tensor a = load_tensor(file, info, c10::kCPU);
  EXPECT_EQ(a.data_ptr(), static_cast<void*>(file->bytes(info).data())) << "expected a view, got a copy";
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(a.scalar_type(), c10::kFloat);
  // The view keeps the mapping alive after every other reference to the file is gone.
  const at::Tensor expected = a.clone();
  file.reset();
  EXPECT_TRUE(at::equal(a, expected));
}

TEST(SafetensorsTensors, ValuesRoundTripThroughSaveAndLoad) {
  TempDir dir;
  at::manual_seed(3);
  const std::vector<std::pair<std::string, at::Tensor>> saved = {
      {"f16", at::randn({4, 4}).to(at::kHalf)},
      {"bf16", at::randn({2, 3}).to(at::kBFloat16)},
      {"i32", at::randint(-1000, 1000, {9}, at::kInt)},
      {"u8", at::randint(0, 255, {5}, at::kByte)},
      {"bool", at::randint(0, 2, {6}).to(at::kBool)},
      {"f64", at::randn({2})},
      {"strided", at::randn({4, 6}).t()},  // non-contiguous: saved as its contiguous copy
  };
  save_tensors(dir.file("t.safetensors"), saved);
  const auto loaded = load_all(dir.file("t.safetensors"), c10::kCPU);
  ASSERT_EQ(loaded.size(), saved.size());
  for (const auto& [name, tensor] : saved) {
    SCOPED_TRACE(name);
    EXPECT_EQ(loaded.at(name).scalar_type(), tensor.scalar_type());
    EXPECT_TRUE(at::equal(loaded.at(name), tensor));
  }
}

TEST(SafetensorsTensors, WritesThroughAViewNeverReachTheFile) {
  TempDir dir;
  const auto path = write_random_file(dir, {{"w", {64}}});
  const auto before = testing::read_bytes(path);
  {
    auto file = SafetensorsFile::open(path);
    at::Tensor w = load_tensor(file, "w", c10::kCPU);
    w.fill_(42.0f);  // lands in private copy-on-write pages
    EXPECT_EQ(w[0].item<float>(), 42.0f);
  }
  EXPECT_EQ(testing::read_bytes(path), before);
}

TEST(SafetensorsTensors, MisalignedTensorIsCopiedNotViewed) {
  // Another writer may put an F32 tensor at an odd offset (here after 1 byte of U8); ATen needs aligned data.
  TempDir dir;
  const auto bytes = testing::safetensors_bytes(R"({"u":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                                R"("f":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})",
                                                9);
  testing::write_bytes(dir.file("odd.safetensors"), bytes);
  auto file = SafetensorsFile::open(dir.file("odd.safetensors"));
  at::Tensor f = load_tensor(file, "f", c10::kCPU);
  EXPECT_NE(f.data_ptr(), static_cast<void*>(file->bytes(file->tensor("f")).data()));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(f.data_ptr()) % alignof(float), 0u);
  EXPECT_EQ(std::memcmp(f.data_ptr(), file->bytes(file->tensor("f")).data(), 8), 0);
}

TEST(SafetensorsTensors, MetaTensorHasShapeAndDtypeButNoStorage) {
  TempDir dir;
  const auto path = write_random_file(dir, {{"w", {128, 64}}});
  auto file = SafetensorsFile::open(path);
  at::Tensor w = load_tensor(file, "w", c10::Device(c10::kMeta));
  EXPECT_TRUE(w.is_meta());
  EXPECT_EQ(w.sizes(), (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(w.scalar_type(), c10::kFloat);
}

TEST(SafetensorsTensors, DtypesWithoutAtenEquivalentAreRefusedByName) {
  TempDir dir;
  testing::write_bytes(dir.file("fp4.safetensors"),
                       testing::safetensors_bytes(R"({"experts.0.w":{"dtype":"F4","shape":[4],"data_offsets":[0,2]},)"
                                                  R"("experts.0.s":{"dtype":"F8_E8M0","shape":[2],"data_offsets":[2,4]}})",
                                                  4));
  auto file = SafetensorsFile::open(dir.file("fp4.safetensors"));
  for (const char* name : {"experts.0.w", "experts.0.s"}) {
    try {
      load_tensor(file, name, c10::kCPU);
      FAIL() << name << " loaded as an at::Tensor";
    } catch (const FormatError& e) {
      EXPECT_EQ(e.code(), FormatError::Code::InvalidDtype);
      EXPECT_EQ(e.where().tensor, name);
      EXPECT_EQ(e.where().file, dir.file("fp4.safetensors"));
    }
  }
}

TEST(SafetensorsTensors, SavingAMetaTensorIsRefused) {
  TempDir dir;
  const std::vector<std::pair<std::string, at::Tensor>> tensors = {
      {"lm_head.bias", at::empty({8}, at::TensorOptions().device(c10::kMeta))}};
  try {
    save_tensors(dir.file("x.safetensors"), tensors);
    FAIL() << "saved a meta tensor";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.where().tensor, "lm_head.bias");
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.safetensors")));
}

// --- GPU ---------------------------------------------------------------------------------------------------------

#ifdef QH_WITH_CUDA
TEST(GpuSafetensorsTensors, BytesLoadedToCudaMatchTheFileByKernelChecksum) {
  QH_REQUIRE_CUDA();
  TempDir dir;
  // Sizes around the kernel's 16-byte chunks and grid stride, and one large enough to use the whole grid.
  std::vector<std::vector<std::byte>> buffers;
  std::vector<format::TensorData> tensors;
  for (std::size_t n : {std::size_t(1), std::size_t(15), std::size_t(16), std::size_t(4097),
                        std::size_t(3) << 20}) {
    buffers.push_back(testing::random_bytes(n, n));
    tensors.push_back({"t" + std::to_string(n), Dtype::U8, {n}, buffers.back()});
  }
  format::write_file(dir.file("gpu.safetensors"), tensors, {});
  auto file = SafetensorsFile::open(dir.file("gpu.safetensors"));
  const c10::Device cuda(c10::kCUDA, 0);
  at::Tensor result = at::empty({2}, at::TensorOptions().dtype(at::kLong).device(cuda));
  for (const auto& info : file->header().tensors) {
    SCOPED_TRACE(info.name);
    at::Tensor on_gpu = load_tensor(file, info, cuda);
    ASSERT_TRUE(on_gpu.is_cuda());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const auto bytes = file->bytes(info);
    ASSERT_EQ(kernels::launch_byte_checksum(static_cast<const std::uint8_t*>(on_gpu.data_ptr()), bytes.size(),
                                            static_cast<std::uint64_t*>(result.data_ptr()), nullptr),
              cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const at::Tensor host = result.cpu();
    const auto expected =
        kernels::byte_checksum_host(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    EXPECT_EQ(std::uint64_t(host[0].item<int64_t>()), expected.sum);
    EXPECT_EQ(std::uint64_t(host[1].item<int64_t>()), expected.weighted);
  }
}

TEST(GpuSafetensorsTensors, ChecksumDetectsASwappedByte) {
  // The checksum the test above relies on must see a reordering, not only a changed sum.
  QH_REQUIRE_CUDA();
  auto data = testing::random_bytes(1000, 5);
  while (data[10] == data[900]) data[900] ^= std::byte{1};
  const auto a = kernels::byte_checksum_host(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
  std::swap(data[10], data[900]);
  const auto b = kernels::byte_checksum_host(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
  EXPECT_EQ(a.sum, b.sum);
  EXPECT_NE(a.weighted, b.weighted);
  const c10::Device cuda(c10::kCUDA, 0);
  at::Tensor on_gpu = at::from_blob(data.data(), {int64_t(data.size())}, at::kByte).to(cuda);
  at::Tensor result = at::empty({2}, at::TensorOptions().dtype(at::kLong).device(cuda));
  ASSERT_EQ(kernels::launch_byte_checksum(on_gpu.data_ptr<std::uint8_t>(), data.size(),
                                          static_cast<std::uint64_t*>(result.data_ptr()), nullptr),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(std::uint64_t(result[1].item<int64_t>()), b.weighted);
}
#endif

}  // namespace
}  // namespace qh::checkpoint
