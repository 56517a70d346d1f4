"""Decimated copies of a model's visual meshes, for lean rendering.

Under software rendering a camera frame costs time in proportion to the triangles drawn, not the
pixels: robosuite's Lift scene holds 181,856 mesh faces, 167,252 of them in meshes that only
visual geoms use (the Panda's links at 11-15k faces each, the mount pedestal at 33k). At 64-128
px nobody can see them. ``lean_render_model`` returns a *copy* of a compiled ``MjModel`` in which
every visual-only mesh above a face budget is replaced by a quadric-decimated version
(meshoptimizer); the renderer draws the copy, physics keeps the original, so state
trajectories are bit-identical with and without decimation by construction.

Which meshes: those referenced only by geoms that collide with nothing (``contype ==
conaffinity == 0``) and whose material has no texture (decimation would break texture
coordinates). Collision meshes are never touched, even in the render copy.

How a mesh is decimated: coincident vertices are welded first (robosuite's meshes store a
separate vertex per face corner, a triangle soup that decimation would tear apart), then
meshoptimizer's quadric simplification runs down to the face budget, stopping early where it
would move the surface more than ``TOLERANCE_M`` (checked afterwards on the result with an
exact point-to-triangle measure, ``surface_deviation_m``), then each face corner gets a normal smoothed only
across edges flatter than ``CREASE_DEG`` (hard edges stay hard).

How it is stored, inside the copy's own arrays: the decimated vertices and faces are written at
the mesh's existing addresses (``mesh_vertadr``, ``mesh_faceadr``), the distinct corner normals
at ``mesh_normaladr`` (``mesh_facenormal`` indexes them), the counts lowered, and the
mesh's texture coordinates dropped. A mesh whose decimated arrays would not fit where the
original was keeps the original.

The cost (about 1 s per robosuite scene here) is paid once per machine: results are cached on
disk, one file per mesh, keyed by a hash of the compiled mesh (vertices and faces, so scale is
included), the face budget and this module's algorithm version, and once per process in memory.
The cache folder is ``$VLA_ENVS_CACHE_DIR``, else ``$XDG_CACHE_HOME/vla-envs``, else
``~/.cache/vla-envs``; entries are written atomically (concurrent workers at worst compute the
same entry twice). Each entry stores a sha256 of its arrays and its key, checked on every read:
an entry that fails to load or whose arrays do not match the hash (changed since it was written,
copied from another mesh's entry, or written by a version that stored no hash) is never drawn;
it is recomputed and rewritten, with a warning naming the file.
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from vla_envs.files import atomic_path, project_cache_dir

# Chosen from benchmarks/render_fidelity.py and benchmarks/env_throughput.py (docs/rendering.md).
DEFAULT_FACE_BUDGET = 1000
# Part of every cache key: bump when the decimation or the normals change.
ALGORITHM_VERSION = 8
# Part of every cache key: bump when an entry's layout changes (2: entries carry a content hash),
# so entries an older version wrote are not even looked at.
CACHE_FORMAT = 2
# Largest surface deviation a decimated mesh may have (surface_deviation_m); at 128 px the
# agentview camera sees about 8 mm per pixel at the table: about one pixel.
TOLERANCE_M = 0.010
# Edges sharper than this keep distinct normals on each side (hard edges).
CREASE_DEG = 40.0
_MIN_FACE_BUDGET = 16


@dataclass(frozen=True)
class LeanMesh:
    """One decimated mesh: ``faces`` index ``vertices``, ``face_normals`` index ``normals``
    (one normal per face corner, corners with equal normals sharing a row)."""

    vertices: np.ndarray  # (v, 3) float32
    faces: np.ndarray  # (f, 3) int32
    normals: np.ndarray  # (n, 3) float32
    face_normals: np.ndarray  # (f, 3) int32


@dataclass
class DecimationStats:
    """What building one lean model did (tests and benchmarks read it)."""

    meshes_decimated: int = 0
    faces_before: int = 0
    faces_after: int = 0
    computed: int = 0  # meshes decimated now (cache misses)
    loaded_from_disk: int = 0
    from_memory: int = 0
    rebuilt_corrupt: int = 0


def check_face_budget(budget: int | None) -> int | None:
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < _MIN_FACE_BUDGET:
        raise ValueError(
            f"mesh_face_budget={budget!r}: expected None (robosuite's meshes) or an integer >= {_MIN_FACE_BUDGET}"
        )
    return int(budget)


def cache_dir() -> Path:
    """Where decimated meshes are kept between processes."""
    return project_cache_dir() / "meshes"


def visual_only_meshes(model: mujoco.MjModel) -> list[int]:
    """Ids of the meshes that only non-colliding, untextured geoms use."""
    eligible: dict[int, bool] = {}
    for geom in range(model.ngeom):
        if model.geom_type[geom] != mujoco.mjtGeom.mjGEOM_MESH:
            continue
        mesh = int(model.geom_dataid[geom])
        collides = bool(model.geom_contype[geom] or model.geom_conaffinity[geom])
        material = int(model.geom_matid[geom])
        textured = material >= 0 and bool((np.asarray(model.mat_texid[material]) >= 0).any())
        eligible[mesh] = eligible.get(mesh, True) and not collides and not textured
    return sorted(mesh for mesh, ok in eligible.items() if ok)


def mesh_arrays(model: mujoco.MjModel, mesh: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A mesh's compiled vertices (v, 3), faces (f, 3) indexing them, and each face's normal
    (f, 3) as the model's own corner normals give it (their mean, unnormalised)."""
    va, nv = int(model.mesh_vertadr[mesh]), int(model.mesh_vertnum[mesh])
    fa, nf = int(model.mesh_faceadr[mesh]), int(model.mesh_facenum[mesh])
    na, nn = int(model.mesh_normaladr[mesh]), int(model.mesh_normalnum[mesh])
    normals = model.mesh_normal[na:na + nn][model.mesh_facenormal[fa:fa + nf]].sum(axis=1)
    return model.mesh_vert[va:va + nv], model.mesh_face[fa:fa + nf], normals


def weld(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices at identical positions and drop faces that collapse.

    robosuite's OBJ meshes split every vertex per face corner to carry hard normals: as stored,
    a link is a soup of disconnected triangles that quadric decimation would tear into holes.
    """
    unique, inverse = np.unique(np.asarray(vertices), axis=0, return_inverse=True)
    faces = inverse.reshape(-1)[np.asarray(faces, dtype=np.int64)].reshape(-1, 3)
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    return unique, faces[keep]


def corner_normals(vertices: np.ndarray, faces: np.ndarray, crease_deg: float = CREASE_DEG) -> np.ndarray:
    """Unit normals per face corner (f, 3, 3), smooth across edges flatter than ``crease_deg``.

    A corner's normal is the area-weighted mean of the normals of the faces around its vertex
    that lie within ``crease_deg`` of its own face: curved surfaces shade smoothly, while box
    edges and flanges stay sharp, as the split normals of the original meshes drew them.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    corners = vertices[faces]
    weighted = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # length = 2 x area
    unit = weighted / np.maximum(np.linalg.norm(weighted, axis=1, keepdims=True), 1e-18)
    # Every (corner, face sharing its vertex) pair, grouped by vertex.
    corner_vertex = faces.reshape(-1)
    corner_face = np.repeat(np.arange(len(faces)), 3)
    order = np.argsort(corner_vertex, kind="stable")
    starts = np.searchsorted(corner_vertex[order], np.arange(len(vertices) + 1))
    pair_corner, pair_face = [], []
    for vertex in np.flatnonzero(np.diff(starts)):
        group = order[starts[vertex]:starts[vertex + 1]]
        pair_corner.append(np.repeat(group, len(group)))
        pair_face.append(np.tile(corner_face[group], len(group)))
    pair_corner = np.concatenate(pair_corner)
    pair_face = np.concatenate(pair_face)
    within = np.einsum("ij,ij->i", unit[corner_face[pair_corner]], unit[pair_face]) >= np.cos(np.radians(crease_deg))
    normals = np.zeros((len(corner_vertex), 3))
    np.add.at(normals, pair_corner[within], weighted[pair_face[within]])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-18)
    return normals.reshape(-1, 3, 3)


def _winding_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    corners = vertices[faces]
    return np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])


def match_orientation(vertices: np.ndarray, faces: np.ndarray, original_vertices: np.ndarray,
                      original_faces: np.ndarray, original_normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orient decimated faces like the original face nearest to each one's centre.

    The renderer culls by winding and shades by normal. Decimation can flip a triangle's
    winding (it would vanish: a hole), so a face whose winding opposes its original's is turned
    back. Some meshes (the mount pedestal) store normals against their winding in places; the
    second result marks the faces whose normals must point against their winding too.
    """
    from scipy.spatial import cKDTree

    original_winding = _winding_normals(original_vertices, original_faces)
    _, nearest = cKDTree(original_vertices[original_faces].mean(axis=1)).query(vertices[faces].mean(axis=1))
    flipped = np.einsum("ij,ij->i", _winding_normals(vertices, faces), original_winding[nearest]) < 0
    faces = faces.copy()
    faces[flipped] = faces[flipped][:, ::-1]
    inward = np.einsum("ij,ij->i", original_normals[nearest], original_winding[nearest]) < 0
    return faces, inward


def closest_points_on_triangles(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The point of triangle (a[i], b[i], c[i]) closest to points[i], all (n, 3) arrays
    (Ericson, Real-Time Collision Detection, 5.1.5, vectorised)."""
    ab, ac, ap = b - a, c - a, points - a
    d1, d2 = np.einsum("ij,ij->i", ab, ap), np.einsum("ij,ij->i", ac, ap)
    bp = points - b
    d3, d4 = np.einsum("ij,ij->i", ab, bp), np.einsum("ij,ij->i", ac, bp)
    cp = points - c
    d5, d6 = np.einsum("ij,ij->i", ab, cp), np.einsum("ij,ij->i", ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denominator = va + vb + vc
        v, w = vb / denominator, vc / denominator
        result = a + ab * v[:, None] + ac * w[:, None]  # inside the face
        t_ab = d1 / (d1 - d3)
        t_ac = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    regions = [  # later entries override earlier ones; vertex regions last
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), a + ab * t_ab[:, None]),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), a + ac * t_ac[:, None]),
        ((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), b + (c - b) * t_bc[:, None]),
        ((d1 <= 0) & (d2 <= 0), a),
        ((d3 >= 0) & (d4 <= d3), b),
        ((d6 >= 0) & (d5 <= d6), c),
    ]
    for mask, where in regions:
        result = np.where(mask[:, None], where, result)
    return np.where(np.isfinite(result), result, a)  # degenerate triangles: a vertex


def surface_deviation_m(vertices: np.ndarray, faces: np.ndarray, lean: LeanMesh, candidates: int = 16) -> float:
    """How far the original surface strays from the decimated one: the 99th percentile, over
    the original vertices and face centres, of the distance to the decimated surface, in
    metres. Each point is measured to the ``candidates`` decimated faces with the nearest
    centres, which can only overestimate the distance to the whole surface."""
    from scipy.spatial import cKDTree

    vertices = np.asarray(vertices, dtype=np.float64)
    points = np.concatenate([vertices, vertices[np.asarray(faces, dtype=np.int64)].mean(axis=1)])
    corners = lean.vertices[lean.faces].astype(np.float64)
    k = min(candidates, len(corners))
    _, nearest = cKDTree(corners.mean(axis=1)).query(points, k=k)
    nearest = nearest.reshape(len(points), k)
    best = np.full(len(points), np.inf)
    for j in range(k):
        tri = corners[nearest[:, j]]
        closest = closest_points_on_triangles(points, tri[:, 0], tri[:, 1], tri[:, 2])
        best = np.minimum(best, np.linalg.norm(points - closest, axis=1))
    return float(np.percentile(best, 99))


def decimate(vertices: np.ndarray, faces: np.ndarray, face_normals: np.ndarray, face_budget: int,
             tolerance_m: float = TOLERANCE_M) -> LeanMesh:
    """Quadric decimation of one mesh to at most ``face_budget`` faces (meshoptimizer), stopping
    earlier where going on would move the surface more than ``tolerance_m``; crease-aware normals.

    ``face_normals`` (f, 3): the original faces' stored normals (``mesh_arrays``); the
    decimated normals point the same way.
    """
    import meshoptimizer

    original_vertices, original_faces = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    vertices, faces = weld(vertices, faces)
    vertices = vertices.astype(np.float64)
    if len(faces) > face_budget:
        indices = np.ascontiguousarray(faces.reshape(-1), dtype=np.uint32)
        kept = np.zeros_like(indices)
        count = meshoptimizer.simplify(
            kept, indices, np.ascontiguousarray(vertices, dtype=np.float32),
            target_index_count=3 * face_budget,
            # stop early rather than move the surface further than this (metres)
            target_error=tolerance_m, options=meshoptimizer.SIMPLIFY_ERROR_ABSOLUTE,
        )
        faces = kept[:count].reshape(-1, 3)
    # Keep only the vertices the decimated faces use, renumbered in order.
    used, faces = np.unique(np.asarray(faces, dtype=np.int64), return_inverse=True)
    vertices = np.asarray(vertices, dtype=np.float64)[used]
    faces = faces.reshape(-1, 3)
    faces, inward = match_orientation(vertices, faces, original_vertices, original_faces,
                                      np.asarray(face_normals, np.float64))
    normals = corner_normals(vertices, faces)
    normals[inward] *= -1
    # Corners on a smooth patch share a normal: store each distinct one once.
    normals, corner_index = np.unique(normals.reshape(-1, 3).astype(np.float32), axis=0, return_inverse=True)
    return LeanMesh(
        vertices=vertices.astype(np.float32),
        faces=faces.astype(np.int32),
        normals=normals,
        face_normals=corner_index.reshape(-1, 3).astype(np.int32),
    )


def decimate_within(vertices: np.ndarray, faces: np.ndarray, face_normals: np.ndarray, face_budget: int,
                    tolerance_m: float = TOLERANCE_M) -> LeanMesh | None:
    """``decimate`` at ``face_budget`` faces, doubling the budget until the measured surface
    deviation (``surface_deviation_m``) is within ``tolerance_m`` too; ``None`` when only the
    original is. meshoptimizer bounds its own error estimate; this checks it on the result.
    """
    budget = face_budget
    while budget < len(faces):
        lean = decimate(vertices, faces, face_normals, budget, tolerance_m)
        if len(lean.faces) >= len(faces):
            return None  # the tolerance allows no simplification at all
        if surface_deviation_m(vertices, faces, lean) <= tolerance_m:
            return lean
        budget *= 2
    return None


def mesh_key(vertices: np.ndarray, faces: np.ndarray, face_normals: np.ndarray, face_budget: int) -> str:
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"v{ALGORITHM_VERSION}:format={CACHE_FORMAT}:budget={face_budget}:tolerance={TOLERANCE_M}:"
                  f"crease={CREASE_DEG}:".encode())
    for array in (vertices, faces, face_normals):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.view(np.uint8))
    return digest.hexdigest()


_MEMORY: dict[str, LeanMesh] = {}
_ENTRY_ARRAYS = ("keep_original", "vertices", "faces", "normals", "face_normals")


def content_hash(key: str, arrays: dict[str, np.ndarray]) -> str:
    """sha256 of a cache entry's arrays and of its key: a well-formed entry with other vertices,
    or another mesh's entry under this key, does not match."""
    digest = hashlib.sha256(f"{key}:".encode())
    for name in _ENTRY_ARRAYS:
        array = np.asarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}{array.shape}:".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _load(path: Path, key: str) -> LeanMesh | None:
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in _ENTRY_ARRAYS}
        stored = str(data["sha256"]) if "sha256" in data.files else None
    if stored is None:
        raise ValueError("it holds no content hash (an older version wrote it)")
    if stored != content_hash(key, arrays):
        raise ValueError("its arrays do not match the content hash stored with them")
    if bool(arrays["keep_original"]):
        return None
    mesh = LeanMesh(arrays["vertices"], arrays["faces"], arrays["normals"], arrays["face_normals"])
    nv, nf, nn = len(mesh.vertices), len(mesh.faces), len(mesh.normals)
    consistent = (
        mesh.vertices.shape == (nv, 3) and mesh.normals.shape == (nn, 3)
        and mesh.faces.shape == (nf, 3) and mesh.face_normals.shape == (nf, 3) and nf > 0
        and 0 <= mesh.faces.min() and mesh.faces.max() < nv
        and 0 <= mesh.face_normals.min() and mesh.face_normals.max() < nn
    )
    if not consistent:
        raise ValueError("its arrays are inconsistent")
    return mesh


def cached_decimate(vertices: np.ndarray, faces: np.ndarray, face_normals: np.ndarray, face_budget: int,
                    stats: DecimationStats) -> LeanMesh | None:
    """``decimate_within`` through the in-process and on-disk caches."""
    key = mesh_key(vertices, faces, face_normals, face_budget)
    if key in _MEMORY:
        stats.from_memory += 1
        return _MEMORY[key]
    path = cache_dir() / f"{key}.npz"
    found = False
    if path.exists():
        try:
            mesh = _load(path, key)
            found = True
            stats.loaded_from_disk += 1
        except Exception as exc:  # truncated, foreign or changed: never drawn, recomputed and overwritten
            stats.rebuilt_corrupt += 1
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            warnings.warn(f"mesh cache entry {path} is unusable ({reason}); rebuilding it", stacklevel=2)
    if not found:
        mesh = decimate_within(vertices, faces, face_normals, face_budget)
        stats.computed += 1
        empty = np.zeros((0, 3), np.float32)
        arrays = {"keep_original": np.asarray(mesh is None),
                  "vertices": empty if mesh is None else mesh.vertices,
                  "faces": empty.astype(np.int32) if mesh is None else mesh.faces,
                  "normals": empty if mesh is None else mesh.normals,
                  "face_normals": empty.astype(np.int32) if mesh is None else mesh.face_normals}
        arrays["sha256"] = np.asarray(content_hash(key, arrays))
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
        except OSError:  # a read-only cache folder: the in-process cache still holds it
            pass
    _MEMORY[key] = mesh
    return mesh


def lean_render_model(model: mujoco.MjModel, face_budget: int) -> tuple[mujoco.MjModel, DecimationStats]:
    """A copy of ``model`` whose visual-only meshes above ``face_budget`` faces are decimated.

    ``model`` itself is not modified. Draw the copy with ``MjData`` of the original: only mesh
    arrays differ, so every size, address and state layout matches.
    """
    face_budget = check_face_budget(face_budget)
    render_model = copy.copy(model)
    stats = DecimationStats()
    for mesh_id in visual_only_meshes(model):
        vertices, faces, face_normals = mesh_arrays(model, mesh_id)
        if len(faces) <= face_budget:
            continue
        lean = cached_decimate(vertices, faces, face_normals, face_budget, stats)
        if lean is None:
            continue
        nv, nf, nn = len(lean.vertices), len(lean.faces), len(lean.normals)
        if nv > int(model.mesh_vertnum[mesh_id]) or nf > len(faces) or nn > int(model.mesh_normalnum[mesh_id]):
            continue  # does not fit where the original was: keep the original
        va, fa, na = int(model.mesh_vertadr[mesh_id]), int(model.mesh_faceadr[mesh_id]), int(model.mesh_normaladr[mesh_id])
        render_model.mesh_vert[va:va + nv] = lean.vertices
        render_model.mesh_face[fa:fa + nf] = lean.faces
        render_model.mesh_normal[na:na + nn] = lean.normals
        render_model.mesh_facenormal[fa:fa + nf] = lean.face_normals
        render_model.mesh_vertnum[mesh_id] = nv
        render_model.mesh_facenum[mesh_id] = nf
        render_model.mesh_normalnum[mesh_id] = nn
        render_model.mesh_texcoordnum[mesh_id] = 0
        stats.meshes_decimated += 1
        stats.faces_before += len(faces)
        stats.faces_after += nf
    return render_model, stats
