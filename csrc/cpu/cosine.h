// cosine_pairs and the native half of topk_cosine (mask + streaming top-k of
// one block of scores; the block itself comes from a BLAS product in Python).
#pragma once

#include <cstdint>

namespace ctre {

// A[n_a * dim] : T   dense, C order
// B[n_b * dim] : T   dense, C order
// rows[k]      : int64, in [0, n_a);  cols[k] : int64, in [0, n_b)
// out[k]       : T   overwritten with |cos(A[rows[i]], B[cols[i]])|, 0 where a norm is 0
// Cost: O(k * dim), one pass over the two rows of each pair (dot and both
// norms together); parallel over pairs.
template <class T>
void cosine_pairs(std::int64_t n_a, std::int64_t n_b, std::int64_t dim, const T* A, const T* B,
                  std::int64_t k, const std::int64_t* rows, const std::int64_t* cols, T* out);

// One block of the streaming top-k of topk_cosine.
// S[m * n]        : T      raw scores of rows r0 .. r0 + m - 1 (any sign; |S| is the
//                          score). MODIFIED: excluded entries are overwritten with NaN.
// indptr[>= r0 + m + 1], indices : I   exclusion pattern (W's CSR arrays), sorted or not
// keys_in[n_top], scores_in[n_top] : the current top, best first (key = row * n + col)
// keys_out[k], scores_out[k]       : caller-allocated; receive the new top, best first
// Returns the new top's length, min(k, n_top + entries not excluded).
// Order: score descending, ties by key ascending (a total order, so the result
// is exactly the k best of everything seen). Admission: an entry enters when
// |S| exceeds the running k-th score, or a higher bar guessed from an even
// sample of 8,192 entries of a block of >= 32,768 (about 2k entries above it).
// A guess that lets fewer than k entries of (top, block) through is detected
// and the block scanned again from the running k-th score, so the answer never
// depends on it. Cost: O(m * n) to scan (one compare per entry; with the guess
// few admissions, so few compactions) + O(k log k) to sort; memory O(k) per
// thread; parallel over rows. sort_out = false skips the sort (O(k) instead):
// the top then comes back unordered except that, once it holds k entries, the
// k-th best is at position k - 1 with the better ones before it, which is all
// a following block needs; the caller sorts once after the last block.
template <class T, class I>
std::int64_t topk_block(std::int64_t m, std::int64_t n, T* S, std::int64_t r0, const I* indptr,
                        const I* indices, std::int64_t k, std::int64_t n_top,
                        const std::int64_t* keys_in, const T* scores_in,
                        std::int64_t* keys_out, T* scores_out, bool sort_out = true);

}  // namespace ctre
