// spmm_t dispatcher: the spmm row kernel on the transposed arrays, with the
// values gathered through t_perm.
#include "cpu/common.h"
#include "cpu/spmm_t.h"

#define CTRE_KERNEL_HEADER "cpu/spmm_kernel.h"
#include "cpu/isa_expand.h"

namespace ctre {

template <class T, class I>
void spmm_t(std::int64_t n_in, std::int64_t batch, const I* t_indptr, const I* t_indices,
            const I* t_perm, const T* data, const T* G, T* out) {
  CTRE_DISPATCH(spmm_t_rows, n_in, batch, t_indptr, t_indices, t_perm, data, G, out);
}

#define CTRE_INSTANTIATE(T, I)                                                             \
  template void spmm_t<T, I>(std::int64_t, std::int64_t, const I*, const I*, const I*, \
                             const T*, const T*, T*);
CTRE_FOR_TYPES(CTRE_INSTANTIATE)
#undef CTRE_INSTANTIATE

}  // namespace ctre
