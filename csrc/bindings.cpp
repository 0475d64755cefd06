// pybind11 module ctre_sparse._native: the C++/OpenMP CPU kernels.
//
// Each function checks dtypes, contiguity and shapes (O(1)), never copies or
// casts (an output must be written in place), dispatches on the value dtype
// (float32/float64) and index dtype (int32/int64), and releases the GIL while
// the kernel runs. Index bounds and sortedness are NOT checked here (O(nnz));
// ctre_sparse.ops validates before calling.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "cpu/common.h"
#include "cpu/cosine.h"
#include "cpu/insert.h"
#include "cpu/prune.h"
#include "cpu/sddmm.h"
#include "cpu/spmm.h"
#include "cpu/spmm_t.h"

namespace py = pybind11;
using std::int32_t;
using std::int64_t;

namespace {

template <class T>
bool is(const py::array& a) {
  return py::isinstance<py::array_t<T>>(a);
}

std::string describe(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

void need(bool ok, const std::string& msg) {
  if (!ok) throw py::value_error(msg);
}

// Checks a C-contiguous array of dtype T with ndim dims; returns its data.
template <class T>
const T* in(const py::array& a, const char* name, int ndim) {
  if (!is<T>(a))
    throw py::type_error(std::string(name) + " has dtype " + describe(a) + ", expected " +
                         describe(py::array_t<T>(0)));
  need(a.ndim() == ndim, std::string(name) + " must be " + std::to_string(ndim) + "-D, got " +
                             std::to_string(a.ndim()) + "-D");
  need((a.flags() & py::array::c_style) != 0, std::string(name) + " must be C-contiguous");
  return static_cast<const T*>(a.data());
}

template <class T>
T* inout(py::array& a, const char* name, int ndim) {
  in<T>(a, name, ndim);
  need(a.writeable(), std::string(name) + " must be writeable");
  return static_cast<T*>(a.mutable_data());
}

// Calls f(T(), I()) for the value dtype of `values` and index dtype of `index`.
template <class F>
void with_types(const py::array& values, const py::array& index, F&& f) {
  const bool i32 = is<int32_t>(index), i64 = is<int64_t>(index);
  if (!i32 && !i64)
    throw py::type_error("index arrays must be int32 or int64, got " + describe(index));
  if (is<float>(values)) {
    if (i32) f(float(), int32_t()); else f(float(), int64_t());
  } else if (is<double>(values)) {
    if (i32) f(double(), int32_t()); else f(double(), int64_t());
  } else {
    throw py::type_error("values must be float32 or float64, got " + describe(values));
  }
}

void bind_products(py::module_& m) {
  m.def("spmm", [](py::array indptr, py::array indices, py::array data, py::array X,
                   py::array out) {
    with_types(data, indptr, [&](auto t, auto i) {
      using T = decltype(t);
      using I = decltype(i);
      const int64_t n_rows = static_cast<int64_t>(indptr.size()) - 1;
      const int64_t batch = X.ndim() == 2 ? X.shape(1) : 0;
      need(n_rows >= 0 && out.ndim() == 2 && out.shape(0) == n_rows && out.shape(1) == batch,
           "spmm: out must have shape (n_out, batch)");
      need(indices.size() == data.size(), "spmm: indices and data must have the same length");
      auto p = std::make_tuple(in<I>(indptr, "indptr", 1), in<I>(indices, "indices", 1),
                               in<T>(data, "data", 1), in<T>(X, "X", 2), inout<T>(out, "out", 2));
      py::gil_scoped_release nogil;
      ctre::spmm<T, I>(n_rows, batch, std::get<0>(p), std::get<1>(p), std::get<2>(p),
                       std::get<3>(p), std::get<4>(p));
    });
  }, py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("X"), py::arg("out"),
     "out[...] = W @ X, W = CSR(indptr, indices, data); O(nnz * batch).");

  m.def("spmm_t", [](py::array t_indptr, py::array t_indices, py::array t_perm, py::array data,
                     py::array G, py::array out) {
    with_types(data, t_indptr, [&](auto t, auto i) {
      using T = decltype(t);
      using I = decltype(i);
      const int64_t n_in = static_cast<int64_t>(t_indptr.size()) - 1;
      const int64_t batch = G.ndim() == 2 ? G.shape(1) : 0;
      need(n_in >= 0 && out.ndim() == 2 && out.shape(0) == n_in && out.shape(1) == batch,
           "spmm_t: out must have shape (n_in, batch)");
      need(t_indices.size() == data.size() && t_perm.size() == data.size(),
           "spmm_t: t_indices, t_perm and data must have the same length");
      auto p = std::make_tuple(in<I>(t_indptr, "t_indptr", 1), in<I>(t_indices, "t_indices", 1),
                               in<I>(t_perm, "t_perm", 1), in<T>(data, "data", 1),
                               in<T>(G, "G", 2), inout<T>(out, "out", 2));
      py::gil_scoped_release nogil;
      ctre::spmm_t<T, I>(n_in, batch, std::get<0>(p), std::get<1>(p), std::get<2>(p),
                         std::get<3>(p), std::get<4>(p), std::get<5>(p));
    });
  }, py::arg("t_indptr"), py::arg("t_indices"), py::arg("t_perm"), py::arg("data"), py::arg("G"),
     py::arg("out"), "out[...] = W.T @ G through the cached transpose; O(nnz * batch).");

  m.def("sddmm", [](py::array indptr, py::array indices, py::array G, py::array X,
                    py::array out) {
    with_types(G, indptr, [&](auto t, auto i) {
      using T = decltype(t);
      using I = decltype(i);
      const int64_t n_rows = static_cast<int64_t>(indptr.size()) - 1;
      const int64_t batch = X.ndim() == 2 ? X.shape(1) : 0;
      need(n_rows >= 0 && G.ndim() == 2 && G.shape(0) == n_rows && G.shape(1) == batch,
           "sddmm: G must have shape (n_out, batch) with the batch of X");
      need(out.size() == indices.size(), "sddmm: out must have length nnz");
      auto p = std::make_tuple(in<I>(indptr, "indptr", 1), in<I>(indices, "indices", 1),
                               in<T>(G, "G", 2), in<T>(X, "X", 2), inout<T>(out, "out", 1));
      py::gil_scoped_release nogil;
      ctre::sddmm<T, I>(n_rows, batch, std::get<0>(p), std::get<1>(p), std::get<2>(p),
                        std::get<3>(p), std::get<4>(p));
    });
  }, py::arg("indptr"), py::arg("indices"), py::arg("G"), py::arg("X"), py::arg("out"),
     "out[p] = dot(G[row(p)], X[indices[p]]); O(nnz * batch).");
}

void bind_cosine(py::module_& m) {
  m.def("cosine_pairs", [](py::array A, py::array B, py::array rows, py::array cols,
                           py::array out) {
    with_types(A, rows, [&](auto t, auto) {
      using T = decltype(t);
      need(A.ndim() == 2 && B.ndim() == 2 && A.shape(1) == B.shape(1),
           "cosine_pairs: A and B must be 2-D with the same number of columns");
      need(rows.size() == cols.size() && out.size() == rows.size(),
           "cosine_pairs: rows, cols and out must have the same length");
      auto p = std::make_tuple(in<T>(A, "A", 2), in<T>(B, "B", 2),
                               in<int64_t>(rows, "rows", 1), in<int64_t>(cols, "cols", 1),
                               inout<T>(out, "out", 1));
      const int64_t n_a = A.shape(0), n_b = B.shape(0), dim = A.shape(1), k = rows.size();
      py::gil_scoped_release nogil;
      ctre::cosine_pairs<T>(n_a, n_b, dim, std::get<0>(p), std::get<1>(p), k, std::get<2>(p),
                            std::get<3>(p), std::get<4>(p));
    });
  }, py::arg("A"), py::arg("B"), py::arg("rows"), py::arg("cols"), py::arg("out"),
     "out[i] = |cos(A[rows[i]], B[cols[i]])| (0 where a norm is 0); rows, cols int64.");

  m.def("topk_block", [](py::array S, int64_t r0, py::array indptr, py::array indices, int64_t k,
                         py::array keys, py::array scores, bool sort) {
    py::tuple result;
    with_types(S, indptr, [&](auto t, auto i) {
      using T = decltype(t);
      using I = decltype(i);
      need(S.ndim() == 2 && r0 >= 0 && r0 + S.shape(0) + 1 <= static_cast<int64_t>(indptr.size()),
           "topk_block: S must be 2-D and rows r0 .. r0 + S.shape[0] must exist in indptr");
      need(keys.size() == scores.size() && keys.size() <= k && k >= 0,
           "topk_block: keys and scores must have the same length, at most k");
      py::array_t<int64_t> keys_out(k);
      py::array_t<T> scores_out(k);
      auto p = std::make_tuple(inout<T>(S, "S", 2), in<I>(indptr, "indptr", 1),
                               in<I>(indices, "indices", 1), in<int64_t>(keys, "keys", 1),
                               in<T>(scores, "scores", 1), keys_out.mutable_data(),
                               scores_out.mutable_data());
      const int64_t m = S.shape(0), n = S.shape(1), n_top = keys.size();
      int64_t len = 0;
      {
        py::gil_scoped_release nogil;
        len = ctre::topk_block<T, I>(m, n, std::get<0>(p), r0, std::get<1>(p), std::get<2>(p), k,
                                     n_top, std::get<3>(p), std::get<4>(p), std::get<5>(p),
                                     std::get<6>(p), sort);
      }
      keys_out.resize({len});
      scores_out.resize({len});
      result = py::make_tuple(keys_out, scores_out);
    });
    return result;
  }, py::arg("S"), py::arg("r0"), py::arg("indptr"), py::arg("indices"), py::arg("k"),
     py::arg("keys"), py::arg("scores"), py::arg("sort") = true,
     "Merge block S (rows r0.., scores |S|, excluded entries overwritten with NaN) into the "
     "top (keys, scores); returns the new top, best first, ties by key (sort=False: unordered "
     "but for the k-th best at position k - 1 once k are kept; sort once after the last block).");
}

void bind_topology(py::module_& m) {
  m.def("prune_magnitude", [](py::array data, int64_t n_remove) {
    py::array_t<int64_t> kept;
    with_types(data, py::array_t<int64_t>(0), [&](auto t, auto) {
      using T = decltype(t);
      const int64_t nnz = data.size();
      need(0 <= n_remove && n_remove <= nnz, "prune_magnitude: n_remove must be in [0, nnz]");
      const T* d = in<T>(data, "data", 1);
      kept = py::array_t<int64_t>(nnz - n_remove);
      int64_t* k = kept.mutable_data();
      py::gil_scoped_release nogil;
      ctre::prune_magnitude<T>(nnz, d, n_remove, k);
    });
    return kept;
  }, py::arg("data"), py::arg("n_remove"),
     "Sorted positions kept after removing the n_remove smallest |data| (stable ties).");

  m.def("insert", [](py::array indptr, py::array indices, py::array data, py::array rows,
                     py::array cols, py::array values) {
    py::tuple result;
    with_types(data, indptr, [&](auto t, auto i) {
      using T = decltype(t);
      using I = decltype(i);
      const int64_t n_rows = static_cast<int64_t>(indptr.size()) - 1, nnz = data.size(),
                    mm = rows.size();
      need(n_rows >= 0 && indices.size() == nnz, "insert: indices and data must have length nnz");
      need(cols.size() == mm && values.size() == mm, "insert: rows, cols, values lengths differ");
      py::array_t<I> o_indptr(n_rows + 1), o_indices(nnz + mm);
      py::array_t<T> o_data(nnz + mm);
      py::array_t<int64_t> old_pos(nnz), new_pos(mm);
      auto p = std::make_tuple(in<I>(indptr, "indptr", 1), in<I>(indices, "indices", 1),
                               in<T>(data, "data", 1), in<int64_t>(rows, "rows", 1),
                               in<int64_t>(cols, "cols", 1), in<T>(values, "values", 1));
      I* oi = o_indptr.mutable_data();
      I* ox = o_indices.mutable_data();
      T* od = o_data.mutable_data();
      int64_t* op = old_pos.mutable_data();
      int64_t* np_ = new_pos.mutable_data();
      {
        py::gil_scoped_release nogil;
        ctre::insert<T, I>(n_rows, std::get<0>(p), std::get<1>(p), std::get<2>(p), mm,
                           std::get<3>(p), std::get<4>(p), std::get<5>(p), oi, ox, od, op, np_);
      }
      result = py::make_tuple(o_indptr, o_indices, o_data, old_pos, new_pos);
    });
    return result;
  }, py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("rows"), py::arg("cols"),
     py::arg("values"), "Merged CSR (indptr, indices, data, old_pos, new_pos); rows/cols int64.");
}

ctre::Isa parse_isa(const std::string& name) {
  for (int i = 0; i < ctre::kNumIsa; ++i)
    if (name == ctre::isa_name(static_cast<ctre::Isa>(i))) return static_cast<ctre::Isa>(i);
  throw py::value_error("isa must be 'generic', 'avx2' or 'avx512', got '" + name + "'");
}

void bind_runtime(py::module_& m) {
  m.def("isa", [] { return std::string(ctre::isa_name(ctre::active_isa())); },
        "The ISA code path the kernels use now.");
  m.def("best_isa", [] { return std::string(ctre::isa_name(ctre::best_isa())); },
        "The best ISA code path this CPU supports (and this build contains).");
  m.def("supported_isas", [] {
    py::list out;
    for (int i = 0; i < ctre::kNumIsa; ++i)
      if (ctre::isa_supported(static_cast<ctre::Isa>(i)))
        out.append(ctre::isa_name(static_cast<ctre::Isa>(i)));
    return out;
  }, "ISA code paths compiled in and supported by this CPU.");
  m.def("set_isa", [](const std::string& name) {
    const ctre::Isa isa = parse_isa(name);
    if (!ctre::isa_supported(isa))
      throw py::value_error("ISA path '" + name + "' is not supported on this CPU/build");
    ctre::set_active_isa(isa);
  }, py::arg("name"), "Force an ISA code path (tests and benchmarks).");
  m.def("isa_calls", [] {
    py::dict out;
    for (int i = 0; i < ctre::kNumIsa; ++i)
      out[ctre::isa_name(static_cast<ctre::Isa>(i))] = ctre::call_count(static_cast<ctre::Isa>(i));
    return out;
  }, "Number of SIMD-kernel calls that ran on each ISA path since import.");
  m.def("get_num_threads", [] { return ctre::num_threads(); },
        "OpenMP threads a kernel uses (omp_get_max_threads).");
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("number of threads must be >= 1, got " + std::to_string(n));
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
  }, py::arg("n"), "Set the OpenMP thread count of the kernels (for this Python thread).");
  m.def("prefetch_distance", [] { return ctre::g_prefetch; },
        "Prefetch distance (nonzeros ahead) of the X-row gathers.");
  m.def("set_prefetch_distance", [](int d) {
    if (d < 0) throw py::value_error("prefetch distance must be >= 0");
    ctre::g_prefetch = d;
  }, py::arg("d"), "Set the prefetch distance (tuning; 0 prefetches the current row).");
#ifdef _OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "ctre_sparse C++/OpenMP CPU kernels (see ctre_sparse.backends.native).";
  bind_products(m);
  bind_cosine(m);
  bind_topology(m);
  bind_runtime(m);
}
