// ptb_lm's own CPU kernels, loaded into MXNet 1.9.1 at run time (mx.library.load, lib_api version 11).
//
// Built on first use for the CPU it runs on (-march=native; ptb_lm/kernels/__init__.py), so the
// compiler vectorises the inner loops for AVX2 or AVX-512 as the machine has them. The loops are
// written so that it can: no calls, no branches, one exp written out (exp_lanes).
//
// The operators: ptb_softmax_ce, ptb_layer_norm and ptb_dropout, each described above its code.
//
// ptb_softmax_ce(logits (N, V) float32, label (N,) float32 or int32) -> loss (N,), lse (N,)
//   loss[i] = lse[i] - logits[i, label[i]]  with  lse[i] = log(sum_j exp(logits[i, j]))
//   computed as max + log(sum exp(z - max)): exact at any loss, where exp(-loss) would underflow.
//   d logits[i, j] = dloss[i] * (exp(logits[i, j] - lse[i]) - [j == label[i]]); the label gets no gradient.
//   A label outside [0, V) is clipped into it, as MXNet's pick does by default.
//   A row holding NaN or +inf gives a NaN loss, as MXNet's operators do, so that training sees the
//   divergence; a -inf logit is a probability of 0.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <omp.h>

#include "mxnet/lib_api.h"

using namespace mxnet::ext;

namespace {

// The most threads a kernel's parallel loop may use: MXNet's own operators' count (MXNet caps its
// operators with MXNET_OMP_MAX_THREADS without telling OpenMP), set by ptb_lm when it loads the
// library. OpenMP's own count for the calling thread still applies beneath it, so that ptb_lm's
// sharing of the cores (omp_set_num_threads between batches) reaches these loops too.
int thread_cap = 0;

int team() {
  const int openmp = omp_get_max_threads();
  return thread_cap > 0 && thread_cap < openmp ? thread_cap : openmp;
}

// e^x for x in [-87.3, 88.3] (clamped to it), to about 2 ulp: x = n ln2 + r, e^r by Cephes' expf
// polynomial, 2^n built in the exponent bits. Plain arithmetic, so that loops over it vectorise.
inline float exp_lanes(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  // round to nearest by adding and taking away 1.5 * 2^23 (no call, so the loop vectorises)
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  union {
    int32_t bits;
    float value;
  } scale;
  scale.bits = (static_cast<int32_t>(n) + 127) << 23;
  return e * scale.value;
}

int64_t label_at(MXTensor& label, int64_t i, int64_t classes) {
  int64_t y;
  if (label.dtype == kInt32) {
    y = label.data<int32_t>()[i];
  } else if (label.dtype == kInt64) {
    y = label.data<int64_t>()[i];
  } else {
    y = static_cast<int64_t>(label.data<float>()[i]);
  }
  return y < 0 ? 0 : (y >= classes ? classes - 1 : y);
}

// lse of one row; NaN if the row holds NaN or inf.
float row_lse(const float* z, int64_t classes) {
  float top = -INFINITY, total = 0.0f;
#pragma omp simd reduction(max : top) reduction(+ : total)
  for (int64_t j = 0; j < classes; ++j) {
    top = z[j] > top ? z[j] : top;
    total += z[j];  // only to see NaN, which max() would pass over
  }
  // NaN or +inf in the row: NaN, as MXNet's log_softmax gives; a -inf logit is a probability of 0
  if (total != total || top == INFINITY) return NAN;
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < classes; ++j) sum += exp_lanes(z[j] - top);
  return top + std::log(sum);
}

bool is_big(int64_t rows, int64_t classes) { return rows * classes >= (1 << 15); }

MXReturnValue softmax_ce_attrs(const std::unordered_map<std::string, std::string>& attrs, int* inputs,
                               int* outputs) {
  *inputs = 2;
  *outputs = 2;
  return MX_SUCCESS;
}

MXReturnValue softmax_ce_types(const std::unordered_map<std::string, std::string>& attrs,
                               std::vector<int>* in_types, std::vector<int>* out_types) {
  if (in_types->at(0) != kFloat32) {
    MX_ERROR_MSG << "ptb_softmax_ce takes float32 logits";
    return MX_FAIL;
  }
  const int label = in_types->at(1);
  if (label != kFloat32 && label != kInt32 && label != kInt64) {
    MX_ERROR_MSG << "ptb_softmax_ce takes float32, int32 or int64 labels";
    return MX_FAIL;
  }
  out_types->at(0) = kFloat32;
  out_types->at(1) = kFloat32;
  return MX_SUCCESS;
}

MXReturnValue softmax_ce_shapes(const std::unordered_map<std::string, std::string>& attrs,
                                std::vector<std::vector<unsigned int>>* in_shapes,
                                std::vector<std::vector<unsigned int>>* out_shapes) {
  const auto& logits = in_shapes->at(0);
  const auto& label = in_shapes->at(1);
  if (logits.size() != 2 || label.size() != 1 || label[0] != logits[0]) {
    MX_ERROR_MSG << "ptb_softmax_ce takes logits (N, V) and labels (N,)";
    return MX_FAIL;
  }
  out_shapes->at(0) = {logits[0]};
  out_shapes->at(1) = {logits[0]};
  return MX_SUCCESS;
}

MXReturnValue softmax_ce_forward(const std::unordered_map<std::string, std::string>& attrs,
                                 std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                                 const OpResource& res) {
  MXTensor& logits = inputs->at(0);
  MXTensor& label = inputs->at(1);
  const int64_t rows = logits.shape[0], classes = logits.shape[1];
  const float* z = logits.data<float>();
  float* loss = outputs->at(0).data<float>();
  float* lse = outputs->at(1).data<float>();
#pragma omp parallel for schedule(static) num_threads(team()) if (is_big(rows, classes))
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = z + i * classes;
    lse[i] = row_lse(row, classes);
    loss[i] = lse[i] - row[label_at(label, i, classes)];
  }
  return MX_SUCCESS;
}

// inputs: dloss, dlse (unused: lse is not the loss), logits, label, loss, lse; outputs: dlogits, dlabel
MXReturnValue softmax_ce_backward(const std::unordered_map<std::string, std::string>& attrs,
                                  std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                                  const OpResource& res) {
  const float* dloss = inputs->at(0).data<float>();
  MXTensor& logits = inputs->at(2);
  MXTensor& label = inputs->at(3);
  const float* lse = inputs->at(5).data<float>();
  const int64_t rows = logits.shape[0], classes = logits.shape[1];
  const float* z = logits.data<float>();
  float* dz = outputs->at(0).data<float>();
#pragma omp parallel for schedule(static) num_threads(team()) if (is_big(rows, classes))
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = z + i * classes;
    float* grad = dz + i * classes;
    const float g = dloss[i], shift = lse[i];
#pragma omp simd
    for (int64_t j = 0; j < classes; ++j) grad[j] = g * exp_lanes(row[j] - shift);
    grad[label_at(label, i, classes)] -= g;
  }
  MXTensor& dlabel = outputs->at(1);
  std::memset(dlabel.data_ptr, 0, dlabel.size() * (dlabel.dtype == kInt64 ? 8 : 4));
  return MX_SUCCESS;
}

// ptb_layer_norm(data (..., C), gamma (C,), beta (C,); eps) -> out (..., C), mean (M,), rstd (M,)
//   over the last axis of each of the M rows: out = (x - mean) * rstd * gamma + beta, rstd = 1 / sqrt(var + eps),
//   var the biased variance (MXNet's LayerNorm with axis -1). mean and rstd are kept for the backward:
//   xhat = (x - mean) * rstd, g = dout * gamma,
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), dgamma = sum_rows dout * xhat, dbeta = sum_rows dout.

float eps_of(const std::unordered_map<std::string, std::string>& attrs) {
  auto found = attrs.find("eps");
  return found == attrs.end() ? 1e-5f : std::stof(found->second);
}

MXReturnValue layer_norm_attrs(const std::unordered_map<std::string, std::string>& attrs, int* inputs,
                               int* outputs) {
  *inputs = 3;
  *outputs = 3;
  return MX_SUCCESS;
}

MXReturnValue layer_norm_types(const std::unordered_map<std::string, std::string>& attrs,
                               std::vector<int>* in_types, std::vector<int>* out_types) {
  for (int t : *in_types) {
    if (t != kFloat32) {
      MX_ERROR_MSG << "ptb_layer_norm takes float32 data, gamma and beta";
      return MX_FAIL;
    }
  }
  for (auto& t : *out_types) t = kFloat32;
  return MX_SUCCESS;
}

MXReturnValue layer_norm_shapes(const std::unordered_map<std::string, std::string>& attrs,
                                std::vector<std::vector<unsigned int>>* in_shapes,
                                std::vector<std::vector<unsigned int>>* out_shapes) {
  const auto& data = in_shapes->at(0);
  if (data.empty() || in_shapes->at(1) != std::vector<unsigned int>{data.back()} ||
      in_shapes->at(2) != std::vector<unsigned int>{data.back()}) {
    MX_ERROR_MSG << "ptb_layer_norm takes data (..., C), gamma (C,) and beta (C,)";
    return MX_FAIL;
  }
  unsigned int rows = 1;
  for (size_t k = 0; k + 1 < data.size(); ++k) rows *= data[k];
  out_shapes->at(0) = data;
  out_shapes->at(1) = {rows};
  out_shapes->at(2) = {rows};
  return MX_SUCCESS;
}

MXReturnValue layer_norm_forward(const std::unordered_map<std::string, std::string>& attrs,
                                 std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                                 const OpResource& res) {
  MXTensor& data = inputs->at(0);
  const int64_t channels = data.shape.back(), rows = data.size() / channels;
  const float eps = eps_of(attrs);
  const float* x = data.data<float>();
  const float* gamma = inputs->at(1).data<float>();
  const float* beta = inputs->at(2).data<float>();
  float* out = outputs->at(0).data<float>();
  float* means = outputs->at(1).data<float>();
  float* rstds = outputs->at(2).data<float>();
#pragma omp parallel for schedule(static) num_threads(team()) if (is_big(rows, channels))
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = x + i * channels;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < channels; ++j) sum += row[j];
    const float mean = sum / channels;
    float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
    for (int64_t j = 0; j < channels; ++j) squares += (row[j] - mean) * (row[j] - mean);
    const float rstd = 1.0f / std::sqrt(squares / channels + eps);
    float* y = out + i * channels;
#pragma omp simd
    for (int64_t j = 0; j < channels; ++j) y[j] = (row[j] - mean) * rstd * gamma[j] + beta[j];
    means[i] = mean;
    rstds[i] = rstd;
  }
  return MX_SUCCESS;
}

// inputs: dout, dmean, drstd (unused: internal), data, gamma, beta, out, mean, rstd;
// outputs: ddata, dgamma, dbeta
MXReturnValue layer_norm_backward(const std::unordered_map<std::string, std::string>& attrs,
                                  std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                                  const OpResource& res) {
  const float* dout = inputs->at(0).data<float>();
  MXTensor& data = inputs->at(3);
  const int64_t channels = data.shape.back(), rows = data.size() / channels;
  const float* x = data.data<float>();
  const float* gamma = inputs->at(4).data<float>();
  const float* means = inputs->at(7).data<float>();
  const float* rstds = inputs->at(8).data<float>();
  float* dx = outputs->at(0).data<float>();
  float* dgamma = outputs->at(1).data<float>();
  float* dbeta = outputs->at(2).data<float>();
  // Each thread sums its rows' dgamma and dbeta apart; the partial sums are then added in thread order, so
  // that the result does not depend on which thread finishes first (exact resume).
  const int threads = is_big(rows, channels) ? team() : 1;
  std::vector<float> partial(2 * threads * channels, 0.0f);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int own = omp_get_thread_num();
    float* pg = partial.data() + (2 * own) * channels;
    float* pb = partial.data() + (2 * own + 1) * channels;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < rows; ++i) {
      const float* row = x + i * channels;
      const float* drow = dout + i * channels;
      const float mean = means[i], rstd = rstds[i];
      float sum_g = 0.0f, sum_gx = 0.0f;
#pragma omp simd reduction(+ : sum_g, sum_gx)
      for (int64_t j = 0; j < channels; ++j) {
        const float xhat = (row[j] - mean) * rstd;
        const float g = drow[j] * gamma[j];
        sum_g += g;
        sum_gx += g * xhat;
        pg[j] += drow[j] * xhat;
        pb[j] += drow[j];
      }
      const float mean_g = sum_g / channels, mean_gx = sum_gx / channels;
      float* drow_x = dx + i * channels;
#pragma omp simd
      for (int64_t j = 0; j < channels; ++j) {
        const float xhat = (row[j] - mean) * rstd;
        drow_x[j] = rstd * (drow[j] * gamma[j] - mean_g - xhat * mean_gx);
      }
    }
  }
  for (int64_t j = 0; j < channels; ++j) {
    float g = 0.0f, b = 0.0f;
    for (int t = 0; t < threads; ++t) {
      g += partial[(2 * t) * channels + j];
      b += partial[(2 * t + 1) * channels + j];
    }
    dgamma[j] = g;
    dbeta[j] = b;
  }
  return MX_SUCCESS;
}

// ptb_dropout(data (...) float32, key (4,) int32; p, axes, site, begin, end) -> out (...)
//   out = data * mask, mask = 1 / (1 - p) where kept and 0 where dropped, as MXNet's Dropout computes it.
//   The mask has data's shape with the axes in `axes` set to 1 and is broadcast along them (MXNet's
//   Dropout(axes=...): axes=(0,) on (T, N, C) draws one mask per sequence, shared over time).
//   Its element m is kept when the lane m % 4 of Philox4x32-10 at counter (m / 4, key[2], key[3], site)
//   and key (key[0], key[1]) is at least p * 2^32: a counter-based generator, so that the backward
//   draws the forward's mask again instead of storing it, and the masks depend on the key and the site
//   alone (not on the thread count, nor on what ran before).
//   A key whose first word is 0 is evaluation: out = data. A loaded operator is not told whether MXNet
//   trains, so the caller says it in the key (ptb_lm/dropout.py).
//   With begin and end (and no axes), only the elements [begin, end) of the flattened data are dropped,
//   as if that range were the data (its element begin is mask element 0); the rest is copied. So one
//   piece of a packed vector (a hidden-to-hidden weight) is masked without slicing it out and back.
//   d data = d out * mask; the key gets no gradient.

// Philox4x32-10 (Salmon et al. 2011, Random123's constants): counter c, key (k0, k1) -> 4 random words in c.
inline void philox4x32_10(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
  }
}

struct DropoutDraw {
  uint32_t k0, k1, c1, c2, site;
  uint32_t threshold;  // kept when the word is >= threshold
  float scale;
  bool training;
};

DropoutDraw draw_of(const std::unordered_map<std::string, std::string>& attrs, const MXTensor& key) {
  const int32_t* words = static_cast<const int32_t*>(key.data_ptr);
  DropoutDraw draw;
  draw.k0 = static_cast<uint32_t>(words[0]);
  draw.k1 = static_cast<uint32_t>(words[1]);
  draw.c1 = static_cast<uint32_t>(words[2]);
  draw.c2 = static_cast<uint32_t>(words[3]);
  draw.training = words[0] != 0;
  auto site = attrs.find("site");
  draw.site = site == attrs.end() ? 0u : static_cast<uint32_t>(std::stoul(site->second));
  auto rate = attrs.find("p");
  const float p = rate == attrs.end() ? 0.5f : std::stof(rate->second);  // a float, as MXNet's Dropout holds it
  const double cut = std::floor(static_cast<double>(p) * 4294967296.0);
  draw.threshold = cut >= 4294967295.0 ? 4294967295u : static_cast<uint32_t>(cut);
  draw.scale = 1.0f / (1.0f - p);  // MXNet's rescale, in its float arithmetic
  draw.training = draw.training && p > 0.0f;
  return draw;
}

// mask[i] for the mask elements [4 * first_block, 4 * (first_block + blocks)), into mask[0 ...]
void fill_mask(const DropoutDraw& d, int64_t first_block, int64_t blocks, float* mask) {
  const uint32_t k0 = d.k0, k1 = d.k1, w1 = d.c1, w2 = d.c2, site = d.site, threshold = d.threshold;
  const float scale = d.scale;  // locals, so that the loop vectorises
#pragma omp simd
  for (int64_t b = 0; b < blocks; ++b) {
    uint32_t c0 = static_cast<uint32_t>(first_block + b), c1 = w1, c2 = w2, c3 = site;
    philox4x32_10(c0, c1, c2, c3, k0, k1);
    mask[4 * b] = scale * static_cast<float>(c0 >= threshold);
    mask[4 * b + 1] = scale * static_cast<float>(c1 >= threshold);
    mask[4 * b + 2] = scale * static_cast<float>(c2 >= threshold);
    mask[4 * b + 3] = scale * static_cast<float>(c3 >= threshold);
  }
}

// The axes a mask is shared along, from MXNet's spelling of a tuple ("(0,)", "(0, 1)", "()"), as a bit set.
uint32_t shared_axes(const std::unordered_map<std::string, std::string>& attrs, int ndim, bool* ok) {
  *ok = true;
  uint32_t shared = 0;
  auto found = attrs.find("axes");
  if (found == attrs.end()) return 0;
  const std::string& text = found->second;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '-' || (text[i] >= '0' && text[i] <= '9')) {
      size_t used = 0;
      int axis = std::stoi(text.substr(i), &used);
      i += used;
      if (axis < 0) axis += ndim;
      if (axis < 0 || axis >= ndim) {
        *ok = false;
        return 0;
      }
      shared |= 1u << axis;
    } else {
      ++i;
    }
  }
  return shared;
}

const int64_t kChunk = 4096;  // mask elements drawn at a time (a multiple of 4)

// dst = src * mask, the mask broadcast along the shared axes.
MXReturnValue apply_dropout(const std::unordered_map<std::string, std::string>& attrs, const MXTensor& key,
                            const MXTensor& src, MXTensor& dst) {
  const float* x = static_cast<const float*>(src.data_ptr);
  float* y = dst.data<float>();
  const int64_t size = src.size();
  const DropoutDraw draw = draw_of(attrs, key);
  if (!draw.training) {
    if (y != x) std::memcpy(y, x, size * sizeof(float));
    return MX_SUCCESS;
  }
  const int ndim = static_cast<int>(src.shape.size());
  bool ok = true;
  const uint32_t shared = shared_axes(attrs, ndim, &ok);
  if (!ok) {
    MX_ERROR_MSG << "ptb_dropout: an axis in " << attrs.at("axes") << " is outside the data's " << ndim << " axes";
    return MX_FAIL;
  }
  auto begin_attr = attrs.find("begin"), end_attr = attrs.find("end");
  const int64_t begin = begin_attr == attrs.end() ? 0 : std::stoll(begin_attr->second);
  const int64_t end = end_attr == attrs.end() ? size : std::stoll(end_attr->second);
  if (begin < 0 || end < begin || end > size || (shared != 0 && (begin != 0 || end != size))) {
    MX_ERROR_MSG << "ptb_dropout: the range [" << begin << ", " << end << ") needs 0 <= begin <= end <= " << size
                 << " and no axes";
    return MX_FAIL;
  }
  if (shared == 0) {  // one mask element per element: draw and apply a chunk at a time
    if (y != x) {
      std::memcpy(y, x, begin * sizeof(float));
      std::memcpy(y + end, x + end, (size - end) * sizeof(float));
    }
    const float* xs = x + begin;
    float* ys = y + begin;
    const int64_t count_all = end - begin, chunks = (count_all + kChunk - 1) / kChunk;
#pragma omp parallel num_threads(team()) if (count_all >= (1 << 15))
    {
      float mask[kChunk];
#pragma omp for schedule(static)
      for (int64_t k = 0; k < chunks; ++k) {
        const int64_t first = k * kChunk, count = std::min(kChunk, count_all - first);
        fill_mask(draw, first / 4, (count + 3) / 4, mask);
#pragma omp simd
        for (int64_t j = 0; j < count; ++j) ys[first + j] = xs[first + j] * mask[j];
      }
    }
    return MX_SUCCESS;
  }
  // The mask's shape and, for each axis of the data, its stride in the mask (0 along a shared axis).
  std::vector<int64_t> stride(ndim, 0);
  int64_t mask_size = 1;
  for (int a = ndim - 1; a >= 0; --a) {
    if (!(shared & (1u << a))) {
      stride[a] = mask_size;
      mask_size *= src.shape[a];
    }
  }
  std::vector<float> mask(((mask_size + 3) / 4) * 4);
  fill_mask(draw, 0, (mask_size + 3) / 4, mask.data());
  const int64_t inner = ndim > 0 ? src.shape[ndim - 1] : 1, rows = inner > 0 ? size / inner : 0;
  const int64_t inner_stride = ndim > 0 ? stride[ndim - 1] : 0;
  const float* m = mask.data();
#pragma omp parallel for schedule(static) num_threads(team()) if (size >= (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    int64_t offset = 0, rest = r;  // the mask offset of row r: its index along each outer axis
    for (int a = ndim - 2; a >= 0; --a) {
      offset += (rest % src.shape[a]) * stride[a];
      rest /= src.shape[a];
    }
    const float* xr = x + r * inner;
    float* yr = y + r * inner;
    if (inner_stride == 0) {
      const float value = m[offset];
#pragma omp simd
      for (int64_t j = 0; j < inner; ++j) yr[j] = xr[j] * value;
    } else {
      const float* mr = m + offset;
#pragma omp simd
      for (int64_t j = 0; j < inner; ++j) yr[j] = xr[j] * mr[j];
    }
  }
  return MX_SUCCESS;
}

MXReturnValue dropout_attrs(const std::unordered_map<std::string, std::string>& attrs, int* inputs, int* outputs) {
  *inputs = 2;
  *outputs = 1;
  return MX_SUCCESS;
}

MXReturnValue dropout_types(const std::unordered_map<std::string, std::string>& attrs, std::vector<int>* in_types,
                            std::vector<int>* out_types) {
  if (in_types->at(0) != kFloat32 || in_types->at(1) != kInt32) {
    MX_ERROR_MSG << "ptb_dropout takes float32 data and an int32 key";
    return MX_FAIL;
  }
  out_types->at(0) = kFloat32;
  return MX_SUCCESS;
}

MXReturnValue dropout_shapes(const std::unordered_map<std::string, std::string>& attrs,
                             std::vector<std::vector<unsigned int>>* in_shapes,
                             std::vector<std::vector<unsigned int>>* out_shapes) {
  if (in_shapes->at(1) != std::vector<unsigned int>{4} || in_shapes->at(0).size() > 31) {
    MX_ERROR_MSG << "ptb_dropout takes data of at most 31 axes and a key of shape (4,)";
    return MX_FAIL;
  }
  out_shapes->at(0) = in_shapes->at(0);
  return MX_SUCCESS;
}

MXReturnValue dropout_forward(const std::unordered_map<std::string, std::string>& attrs,
                              std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs, const OpResource& res) {
  return apply_dropout(attrs, inputs->at(1), inputs->at(0), outputs->at(0));
}

// inputs: dout, data, key, out; outputs: ddata, dkey
MXReturnValue dropout_backward(const std::unordered_map<std::string, std::string>& attrs,
                               std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                               const OpResource& res) {
  MXTensor& dkey = outputs->at(1);
  std::memset(dkey.data_ptr, 0, dkey.size() * sizeof(int32_t));
  return apply_dropout(attrs, inputs->at(2), inputs->at(0), outputs->at(0));
}

}  // namespace

// For tests: the generator alone, counter (4 words) and key (2 words) -> 4 words in out.
extern "C" void ptb_kernels_philox(const uint32_t* counter, const uint32_t* key, uint32_t* out) {
  uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  philox4x32_10(c0, c1, c2, c3, key[0], key[1]);
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

extern "C" void ptb_kernels_set_thread_cap(int threads) { thread_cap = threads; }

REGISTER_OP(ptb_layer_norm)
    .setParseAttrs(layer_norm_attrs)
    .setInferType(layer_norm_types)
    .setInferShape(layer_norm_shapes)
    .setForward(layer_norm_forward, "cpu")
    .setBackward(layer_norm_backward, "cpu");

REGISTER_OP(ptb_dropout)
    .setParseAttrs(dropout_attrs)
    .setInferType(dropout_types)
    .setInferShape(dropout_shapes)
    .setForward(dropout_forward, "cpu")
    .setBackward(dropout_backward, "cpu");

REGISTER_OP(ptb_softmax_ce)
    .setParseAttrs(softmax_ce_attrs)
    .setInferType(softmax_ce_types)
    .setInferShape(softmax_ce_shapes)
    .setForward(softmax_ce_forward, "cpu")
    .setBackward(softmax_ce_backward, "cpu");

MXReturnValue initialize(int version) {
  if (version < 10900) {
    MX_ERROR_MSG << "ptb_lm's kernels need MXNet 1.9, found version " << version;
    return MX_FAIL;
  }
  return MX_SUCCESS;
}
