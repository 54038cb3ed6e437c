"""How fast the demand-paged field learns a 3-D signed distance, against the pure-torch peers of
``benchmarks/field_fit.py``, same machine: ``field_fit.py --signal torus``, recorded as
``field_sdf``.

    python benchmarks/field_sdf.py                         # 60 s per system, 1 thread each
    python benchmarks/field_sdf.py --seconds 10 --systems field,hashgrid --out docs/figures

The signal is ``neurofabric.field.signals.torus_signal``: the signed distance to a torus
(major radius 0.3, minor 0.1, centred in the unit cube), scaled to [0, 1] over the cube, at
2^18 uniform training points; 2^16 other points are held out. The field and the torch hash
grid use ``field_fit.py``'s encoding in 3-D (16 levels x 2 features, 2^18 rows per level, base
resolution 16, scale 1.4) and decoder (one hidden layer of 64); SIREN and the ReLU MLP take
3-D coordinates. Every ``--eval-every`` training seconds each system reports the PSNR over the
held-out points and the IoU of the inside (points whose predicted distance is below 0 against
those whose true distance is); the table adds the final IoU and the seconds to IoU 0.95. With
``--out``, the z = 0.5 slice of each system beside the target's, the surface drawn in red.
The other options are ``field_fit.py``'s.
"""

from __future__ import annotations

import sys

from field_fit import main  # pins the threads on import, before numpy loads

if __name__ == "__main__":
    if any(a == "--signal" or a.startswith("--signal=") for a in sys.argv[1:]):
        raise SystemExit("field_sdf.py fits the torus; fit an image with field_fit.py --signal")
    main(["--signal", "torus", *sys.argv[1:]])
