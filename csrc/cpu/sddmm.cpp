// sddmm dispatcher: picks the ISA path (see isa_expand.h) at run time.
#include "cpu/common.h"
#include "cpu/sddmm.h"

#define CTRE_KERNEL_HEADER "cpu/sddmm_kernel.h"
#include "cpu/isa_expand.h"

namespace ctre {

template <class T, class I>
void sddmm(std::int64_t n_rows, std::int64_t batch, const I* indptr, const I* indices,
           const T* G, const T* X, T* out) {
  CTRE_DISPATCH(sddmm_rows, n_rows, batch, indptr, indices, G, X, out);
}

#define CTRE_INSTANTIATE(T, I)                                                            \
  template void sddmm<T, I>(std::int64_t, std::int64_t, const I*, const I*, const T*, \
                            const T*, T*);
CTRE_FOR_TYPES(CTRE_INSTANTIATE)
#undef CTRE_INSTANTIATE

}  // namespace ctre
