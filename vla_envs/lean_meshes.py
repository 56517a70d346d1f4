"""Decimated copies of a model's visual meshes, for lean rendering.

Under software rendering a camera frame costs time in proportion to the triangles drawn, not the
pixels: robosuite's Lift scene holds 181,856 mesh faces, 167,252 of them in meshes that only
visual geoms use (the Panda's links at 11-15k faces each, the mount pedestal at 33k). At 64-128
px nobody can see them. ``lean_render_model`` returns a *copy* of a compiled ``MjModel`` in which
every visual-only mesh above a face budget is replaced by a quadric-decimated version
(meshoptimizer); the renderer draws the copy, physics keeps the original, so state
trajectories are bit-identical with and without decimation by construction.

Which meshes: those referenced only by geoms that collide with nothing (``contype ==
conaffinity == 0``). Collision meshes are never touched, even in the render copy.

How a mesh is decimated: coincident vertices are welded first (robosuite's meshes store a
separate vertex per face corner, a triangle soup that decimation would tear apart), then
meshoptimizer's quadric simplification runs down to the face budget, stopping early where it
would move the surface more than ``TOLERANCE_M`` (checked afterwards on the result with an
exact point-to-triangle measure, ``surface_deviation_m``), then each face corner gets a normal
smoothed only across edges flatter than ``CREASE_DEG`` (hard edges stay hard). Windings are
kept as the simplifier leaves them (it refuses collapses that flip a face); a face whose nearest
original stores its normal against its winding does too (``inward_faces``).

Textured meshes (drawn with a textured material, ``textured_meshes``) keep their texture
coordinates: each face corner's (position, texture coordinate) pair is a vertex of its own to
the simplifier, which weighs texture-coordinate error with position error
(``TEXCOORD_WEIGHT``) and keeps texture seams (several coordinates at one position) as seams.
They are decimated to ``TEXTURED_FACE_BUDGET_FACTOR`` times the budget, and keep their original
where the decimated surface strays from it by more than ``TEXTURED_MEAN_DEVIATION_M`` on average
(a woven basket: detail finer than decimation keeps, with the texture drawn on it).

How it is stored, inside the copy's own arrays: the decimated vertices and faces are written at
the mesh's existing addresses (``mesh_vertadr``, ``mesh_faceadr``), the distinct corner normals
at ``mesh_normaladr`` (``mesh_facenormal`` indexes them), the distinct texture coordinates at
``mesh_texcoordadr`` (``mesh_facetexcoord`` indexes them; dropped for a mesh that had none),
and the counts lowered. A mesh whose decimated arrays would not fit where the original was
keeps the original.

The cost (about 1 s per robosuite scene here) is paid once per machine: results are cached on
disk, one file per mesh, keyed by a hash of the compiled mesh (vertices, faces and, for a
textured mesh, texture coordinates; scale is included), the face budget, the tolerances and this
module's algorithm version, and once per process in memory.
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
ALGORITHM_VERSION = 9
# Part of every cache key: bump when an entry's layout changes (2: entries carry a content hash),
# so entries an older version wrote are not even looked at (3: entries carry texture coordinates).
CACHE_FORMAT = 3
# Largest surface deviation a decimated mesh may have (surface_deviation_m); at 128 px the
# agentview camera sees about 8 mm per pixel at the table: about one pixel.
TOLERANCE_M = 0.010
# Edges sharper than this keep distinct normals on each side (hard edges).
CREASE_DEG = 40.0
_MIN_FACE_BUDGET = 16
# A mesh drawn with a texture (and texture coordinates) is decimated to this many times the face
# budget. Its texture is drawn over its whole surface, so its silhouette and shading differences
# show over more pixels: on LIBERO-Spatial (bowls, ramekin, plate, cookies) the share of pixels
# visibly different was 2.21 / 2.00 / 1.79 % at 1 / 2 / 4 times the budget, against a bound of 2 %,
# for two frames drawn in 21.8 / 22.5 / 26.9 ms (55.1 ms without decimating them)
# (benchmarks/libero_render_fidelity.py, docs/libero.md).
TEXTURED_FACE_BUDGET_FACTOR = 4
# Largest mean surface deviation of a decimated textured mesh (decimate_within). At 4000 faces
# LIBERO's smooth textured objects (bowls, plates, bottles, boxes, mugs, a frying pan) stray
# 0.01-0.12 mm on average; its woven basket (0.78 mm), books, floor lamp, plant (0.39 mm), desk
# caddy (0.35 mm) and kitchen pot (0.34 mm) carry finer detail or thin parts. Decimated, the
# basket alone made 2.9 % of LIBERO-Object task 3's pixels visibly different at 3,992 faces and
# still 1.4 % at 31,996 of its 66,390; the plant and the caddy 0.5 and 0.7 % of LIBERO-10 task 5's.
# With 0.5 mm LIBERO-10's images differed in 1.93 % of pixels, with 0.3 mm in 1.35 %.
TEXTURED_MEAN_DEVIATION_M = 0.0003
# How much a texture-coordinate error counts against a position error in the simplifier, whose
# positions are scaled to the mesh's extent: 1 makes a shift of 1 % of the texture as costly as
# a move of 1 % of the mesh's size. LIBERO's objects map their texture once over the object, so
# both shift the drawn pattern by about as much (benchmarks/libero_render_fidelity.py).
TEXCOORD_WEIGHT = 1.0


@dataclass(frozen=True)
class LeanMesh:
    """One decimated mesh: ``faces`` index ``vertices``, ``face_normals`` index ``normals``
    (one normal per face corner, corners with equal normals sharing a row)."""

    vertices: np.ndarray  # (v, 3) float32
    faces: np.ndarray  # (f, 3) int32
    normals: np.ndarray  # (n, 3) float32
    face_normals: np.ndarray  # (f, 3) int32
    texcoords: np.ndarray | None = None  # (t, 2) float32; None: the mesh has none
    face_texcoords: np.ndarray | None = None  # (f, 3) int32, indexing texcoords


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
    """Ids of the meshes that only non-colliding geoms use."""
    eligible: dict[int, bool] = {}
    for geom in range(model.ngeom):
        if model.geom_type[geom] != mujoco.mjtGeom.mjGEOM_MESH:
            continue
        mesh = int(model.geom_dataid[geom])
        collides = bool(model.geom_contype[geom] or model.geom_conaffinity[geom])
        eligible[mesh] = eligible.get(mesh, True) and not collides
    return sorted(mesh for mesh, ok in eligible.items() if ok)


def textured_meshes(model: mujoco.MjModel) -> set[int]:
    """Ids of the meshes some geom draws with a textured material: only their texture
    coordinates are kept (robosuite's Panda links carry coordinates no material uses)."""
    textured = set()
    for geom in range(model.ngeom):
        material = int(model.geom_matid[geom])
        if (model.geom_type[geom] == mujoco.mjtGeom.mjGEOM_MESH and material >= 0
                and bool((np.asarray(model.mat_texid[material]) >= 0).any())):
            textured.add(int(model.geom_dataid[geom]))
    return textured


def mesh_arrays(model: mujoco.MjModel, mesh: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A mesh's compiled vertices (v, 3), faces (f, 3) indexing them, and each face's normal
    (f, 3) as the model's own corner normals give it (their mean, unnormalised)."""
    va, nv = int(model.mesh_vertadr[mesh]), int(model.mesh_vertnum[mesh])
    fa, nf = int(model.mesh_faceadr[mesh]), int(model.mesh_facenum[mesh])
    na, nn = int(model.mesh_normaladr[mesh]), int(model.mesh_normalnum[mesh])
    normals = model.mesh_normal[na:na + nn][model.mesh_facenormal[fa:fa + nf]].sum(axis=1)
    return model.mesh_vert[va:va + nv], model.mesh_face[fa:fa + nf], normals


def mesh_corner_texcoords(model: mujoco.MjModel, mesh: int) -> np.ndarray | None:
    """Each face corner's texture coordinate (f, 3, 2) as the renderer reads it, or ``None``
    for a mesh without texture coordinates."""
    ta, nt = int(model.mesh_texcoordadr[mesh]), int(model.mesh_texcoordnum[mesh])
    if ta < 0 or nt == 0:
        return None
    fa, nf = int(model.mesh_faceadr[mesh]), int(model.mesh_facenum[mesh])
    return model.mesh_texcoord[ta:ta + nt][model.mesh_facetexcoord[fa:fa + nf]]


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


def inward_faces(vertices: np.ndarray, faces: np.ndarray, original_vertices: np.ndarray,
                 original_faces: np.ndarray, original_normals: np.ndarray, candidates: int = 16) -> np.ndarray:
    """(f,) bool: the decimated faces whose normals must point against their winding, as the
    nearest original triangle's stored normal does (some meshes, the mount pedestal, store
    normals against their winding in places).

    "Nearest" is by distance to the original triangle, among the ``candidates`` with the
    nearest centres: on a thin shell (a plate 2 mm thick) the nearest *centre* can lie on the
    other side. Windings themselves are kept as they are: meshoptimizer refuses collapses that
    would flip a triangle, and turning faces by their nearest original's winding turned faces
    of LIBERO's plates and baskets into holes (benchmarks/libero_render_fidelity.py).
    """
    nearest, _ = nearest_triangles(vertices[faces].mean(axis=1), original_vertices[original_faces], candidates)
    original_winding = _winding_normals(original_vertices, original_faces)
    return np.einsum("ij,ij->i", original_normals[nearest], original_winding[nearest]) < 0


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


def nearest_triangles(points: np.ndarray, triangles: np.ndarray, candidates: int = 16
                      ) -> tuple[np.ndarray, np.ndarray]:
    """For each point (n, 3), the nearest of ``triangles`` (t, 3, 3) among the ``candidates``
    with the nearest centres: its index (n,) and the distance to it (n,). Searching only those
    can overestimate a distance, never underestimate it."""
    from scipy.spatial import cKDTree

    points = np.asarray(points, dtype=np.float64)
    triangles = np.asarray(triangles, dtype=np.float64)
    k = min(candidates, len(triangles))
    _, nearest = cKDTree(triangles.mean(axis=1)).query(points, k=k)
    nearest = nearest.reshape(len(points), k)
    distances = np.empty(nearest.shape)
    for j in range(k):
        tri = triangles[nearest[:, j]]
        closest = closest_points_on_triangles(points, tri[:, 0], tri[:, 1], tri[:, 2])
        distances[:, j] = np.linalg.norm(points - closest, axis=1)
    best = distances.argmin(axis=1)
    rows = np.arange(len(points))
    return nearest[rows, best], distances[rows, best]


def surface_distances_m(vertices: np.ndarray, faces: np.ndarray, lean: LeanMesh, candidates: int = 16) -> np.ndarray:
    """The distance (metres) from each original vertex and face centre to the decimated
    surface (``nearest_triangles``: it can only overestimate)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    points = np.concatenate([vertices, vertices[np.asarray(faces, dtype=np.int64)].mean(axis=1)])
    # Triangle soups repeat each vertex once per face corner: measure each distinct point once.
    distinct, inverse = np.unique(points, axis=0, return_inverse=True)
    _, distance = nearest_triangles(distinct, lean.vertices[lean.faces], candidates)
    return distance[inverse.reshape(-1)]


def surface_deviation_m(vertices: np.ndarray, faces: np.ndarray, lean: LeanMesh, candidates: int = 16) -> float:
    """How far the original surface strays from the decimated one: the 99th percentile of
    ``surface_distances_m``, in metres."""
    return float(np.percentile(surface_distances_m(vertices, faces, lean, candidates), 99))


def weld_with_texcoords(vertices: np.ndarray, faces: np.ndarray, corner_texcoords: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``weld`` for a textured mesh: corners that share a position and a texture coordinate
    become one wedge; wedges at one position keep their own coordinates (a texture seam).

    Returns the distinct positions (p, 3), each wedge's position index (w,) and coordinate
    (w, 2), and the faces indexing wedges (f, 3), without faces whose positions collapse.
    """
    corners = np.concatenate([np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)],
                              np.asarray(corner_texcoords, np.float64)], axis=2).reshape(-1, 5)
    wedges, wedge_of_corner = np.unique(corners, axis=0, return_inverse=True)
    positions, position_of_wedge = np.unique(wedges[:, :3], axis=0, return_inverse=True)
    faces = wedge_of_corner.reshape(-1, 3)
    by_position = position_of_wedge[faces]
    keep = ((by_position[:, 0] != by_position[:, 1]) & (by_position[:, 1] != by_position[:, 2])
            & (by_position[:, 0] != by_position[:, 2]))
    return positions, position_of_wedge, wedges[:, 3:], faces[keep]


def _simplify_with_texcoords(destination: np.ndarray, indices: np.ndarray, positions: np.ndarray,
                             texcoords: np.ndarray, target_index_count: int, target_error: float,
                             options: int) -> int:
    """meshoptimizer's ``meshopt_simplifyWithAttributes`` with the texture coordinates as the
    attributes, each weighted ``TEXCOORD_WEIGHT``; returns the index count written.

    Called through a prototype declared here: the Python package (0.2.30a0) declares no argument
    types for this function, so its own wrapper cannot pass the float ``target_error``.
    """
    import ctypes

    from meshoptimizer._loader import lib

    uint_p, float_p = ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_float)
    size = ctypes.c_size_t
    prototype = ctypes.CFUNCTYPE(
        size,
        uint_p, uint_p, size,  # destination, indices, index_count
        float_p, size, size,  # vertex_positions, vertex_count, vertex_positions_stride
        float_p, size,  # vertex_attributes, vertex_attributes_stride
        float_p, size,  # attribute_weights, attribute_count
        ctypes.POINTER(ctypes.c_ubyte),  # vertex_lock (none)
        size, ctypes.c_float, ctypes.c_uint, float_p,  # target_index_count, target_error, options, result_error
    )
    simplify = prototype(("meshopt_simplifyWithAttributes", lib))
    indices = np.ascontiguousarray(indices, dtype=np.uint32)
    positions = np.ascontiguousarray(positions, dtype=np.float32)
    texcoords = np.ascontiguousarray(texcoords, dtype=np.float32)
    weights = np.full(2, TEXCOORD_WEIGHT, dtype=np.float32)
    if destination.dtype != np.uint32 or not destination.flags.c_contiguous or len(destination) < len(indices):
        raise ValueError("destination must be a contiguous uint32 array at least as long as indices")
    if len(positions) != len(texcoords):
        raise ValueError(f"{len(positions)} positions but {len(texcoords)} texture coordinates: expected one per vertex")
    return int(simplify(
        destination.ctypes.data_as(uint_p), indices.ctypes.data_as(uint_p), len(indices),
        positions.ctypes.data_as(float_p), len(positions), positions.strides[0],
        texcoords.ctypes.data_as(float_p), texcoords.strides[0],
        weights.ctypes.data_as(float_p), len(weights),
        None, target_index_count, target_error, options, None,
    ))


def decimate(vertices: np.ndarray, faces: np.ndarray, face_normals: np.ndarray, face_budget: int,
             tolerance_m: float = TOLERANCE_M, corner_texcoords: np.ndarray | None = None) -> LeanMesh:
    """Quadric decimation of one mesh to at most ``face_budget`` faces (meshoptimizer), stopping
    earlier where going on would move the surface more than ``tolerance_m``; crease-aware normals.

    ``face_normals`` (f, 3): the original faces' stored normals (``mesh_arrays``); the
    decimated normals point the same way. ``corner_texcoords`` (f, 3, 2): each face corner's
    texture coordinate (``mesh_corner_texcoords``), kept through the simplification.
    """
    import meshoptimizer

    original_vertices, original_faces = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    if corner_texcoords is None:
        positions, faces = weld(vertices, faces)
        position_of_wedge, texcoords = np.arange(len(positions)), None
    else:
        positions, position_of_wedge, texcoords, faces = weld_with_texcoords(vertices, faces, corner_texcoords)
    wedge_positions = np.ascontiguousarray(positions[position_of_wedge], dtype=np.float32)
    if len(faces) > face_budget:
        indices = np.ascontiguousarray(faces.reshape(-1), dtype=np.uint32)
        kept = np.zeros_like(indices)
        # stop early rather than move the surface further than this (metres)
        limits = dict(target_index_count=3 * face_budget, target_error=tolerance_m,
                      options=meshoptimizer.SIMPLIFY_ERROR_ABSOLUTE)
        if texcoords is None:
            count = meshoptimizer.simplify(kept, indices, wedge_positions, **limits)
        else:
            count = _simplify_with_texcoords(kept, indices, wedge_positions, texcoords, **limits)
        faces = kept[:count].reshape(-1, 3).astype(np.int64)
    # Keep only the positions and wedges the decimated faces use, renumbered in order.
    used_wedges, wedge_faces = np.unique(faces, return_inverse=True)
    wedge_faces = wedge_faces.reshape(-1, 3)
    used_positions, position_faces = np.unique(position_of_wedge[faces], return_inverse=True)
    position_faces = position_faces.reshape(-1, 3)
    vertices = np.asarray(positions, dtype=np.float64)[used_positions]
    normals = corner_normals(vertices, position_faces)
    normals[inward_faces(vertices, position_faces, original_vertices, original_faces,
                         np.asarray(face_normals, np.float64))] *= -1
    # Corners on a smooth patch share a normal: store each distinct one once.
    normals, corner_index = np.unique(normals.reshape(-1, 3).astype(np.float32), axis=0, return_inverse=True)
    return LeanMesh(
        vertices=vertices.astype(np.float32),
        faces=position_faces.astype(np.int32),
        normals=normals,
        face_normals=corner_index.reshape(-1, 3).astype(np.int32),
        texcoords=None if texcoords is None else np.asarray(texcoords[used_wedges], dtype=np.float32),
        face_texcoords=None if texcoords is None else wedge_faces.astype(np.int32),
    )


def decimate_within(vertices: np.ndarray, faces: np.ndarray, face_normals: np.ndarray, face_budget: int,
                    tolerance_m: float = TOLERANCE_M, corner_texcoords: np.ndarray | None = None) -> LeanMesh | None:
    """``decimate`` at ``face_budget`` faces, doubling the budget until the measured surface
    deviation (``surface_deviation_m``) is within ``tolerance_m`` too; ``None`` when only the
    original is. meshoptimizer bounds its own error estimate; this checks it on the result.

    A textured mesh (``corner_texcoords`` given) whose surface then strays from the decimated
    one by more than ``TEXTURED_MEAN_DEVIATION_M`` on average keeps its original: its detail is
    finer than the decimation keeps, and its texture is drawn on that detail.
    """
    budget = face_budget
    while budget < len(faces):
        lean = decimate(vertices, faces, face_normals, budget, tolerance_m, corner_texcoords)
        if len(lean.faces) >= len(faces):
            return None  # the tolerance allows no simplification at all
        distances = surface_distances_m(vertices, faces, lean)
        if np.percentile(distances, 99) <= tolerance_m:
            if corner_texcoords is not None and distances.mean() > TEXTURED_MEAN_DEVIATION_M:
                return None
            return lean
        budget *= 2
    return None


def mesh_key(vertices: np.ndarray, faces: np.ndarray, face_normals: np.ndarray, face_budget: int,
             corner_texcoords: np.ndarray | None = None) -> str:
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"v{ALGORITHM_VERSION}:format={CACHE_FORMAT}:budget={face_budget}:tolerance={TOLERANCE_M}:"
                  f"crease={CREASE_DEG}:texcoord_weight={TEXCOORD_WEIGHT}:textured_mean={TEXTURED_MEAN_DEVIATION_M}:".encode())
    digest.update(f"texcoords={corner_texcoords is not None}:".encode())
    arrays = [a for a in (vertices, faces, face_normals, corner_texcoords) if a is not None]
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.view(np.uint8))
    return digest.hexdigest()


_MEMORY: dict[str, LeanMesh] = {}
# An entry without texture coordinates stores them as (0, 2) and (0, 3) arrays.
_ENTRY_ARRAYS = ("keep_original", "vertices", "faces", "normals", "face_normals", "texcoords", "face_texcoords")


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
    textured = len(arrays["face_texcoords"]) > 0
    mesh = LeanMesh(arrays["vertices"], arrays["faces"], arrays["normals"], arrays["face_normals"],
                    arrays["texcoords"] if textured else None, arrays["face_texcoords"] if textured else None)
    nv, nf, nn = len(mesh.vertices), len(mesh.faces), len(mesh.normals)
    consistent = (
        mesh.vertices.shape == (nv, 3) and mesh.normals.shape == (nn, 3)
        and mesh.faces.shape == (nf, 3) and mesh.face_normals.shape == (nf, 3) and nf > 0
        and 0 <= mesh.faces.min() and mesh.faces.max() < nv
        and 0 <= mesh.face_normals.min() and mesh.face_normals.max() < nn
    )
    if textured:
        nt = len(mesh.texcoords)
        consistent = consistent and (
            mesh.texcoords.shape == (nt, 2) and mesh.face_texcoords.shape == (nf, 3)
            and 0 <= mesh.face_texcoords.min() and mesh.face_texcoords.max() < nt
        )
    if not consistent:
        raise ValueError("its arrays are inconsistent")
    return mesh


def cached_decimate(vertices: np.ndarray, faces: np.ndarray, face_normals: np.ndarray, face_budget: int,
                    stats: DecimationStats, corner_texcoords: np.ndarray | None = None) -> LeanMesh | None:
    """``decimate_within`` through the in-process and on-disk caches."""
    key = mesh_key(vertices, faces, face_normals, face_budget, corner_texcoords)
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
        mesh = decimate_within(vertices, faces, face_normals, face_budget, corner_texcoords=corner_texcoords)
        stats.computed += 1
        empty = np.zeros((0, 3), np.float32)
        textured = mesh is not None and mesh.texcoords is not None
        arrays = {"keep_original": np.asarray(mesh is None),
                  "vertices": empty if mesh is None else mesh.vertices,
                  "faces": empty.astype(np.int32) if mesh is None else mesh.faces,
                  "normals": empty if mesh is None else mesh.normals,
                  "face_normals": empty.astype(np.int32) if mesh is None else mesh.face_normals,
                  "texcoords": mesh.texcoords if textured else np.zeros((0, 2), np.float32),
                  "face_texcoords": mesh.face_texcoords if textured else empty.astype(np.int32)}
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
    textured = textured_meshes(model)
    for mesh_id in visual_only_meshes(model):
        vertices, faces, face_normals = mesh_arrays(model, mesh_id)
        corner_texcoords = mesh_corner_texcoords(model, mesh_id) if mesh_id in textured else None
        budget = face_budget if corner_texcoords is None else TEXTURED_FACE_BUDGET_FACTOR * face_budget
        if len(faces) <= budget:
            continue
        lean = cached_decimate(vertices, faces, face_normals, budget, stats, corner_texcoords)
        if lean is None:
            continue
        nv, nf, nn = len(lean.vertices), len(lean.faces), len(lean.normals)
        nt = 0 if lean.texcoords is None else len(lean.texcoords)
        if (nv > int(model.mesh_vertnum[mesh_id]) or nf > len(faces) or nn > int(model.mesh_normalnum[mesh_id])
                or nt > int(model.mesh_texcoordnum[mesh_id])):
            continue  # does not fit where the original was: keep the original
        va, fa, na = int(model.mesh_vertadr[mesh_id]), int(model.mesh_faceadr[mesh_id]), int(model.mesh_normaladr[mesh_id])
        render_model.mesh_vert[va:va + nv] = lean.vertices
        render_model.mesh_face[fa:fa + nf] = lean.faces
        render_model.mesh_normal[na:na + nn] = lean.normals
        render_model.mesh_facenormal[fa:fa + nf] = lean.face_normals
        render_model.mesh_vertnum[mesh_id] = nv
        render_model.mesh_facenum[mesh_id] = nf
        render_model.mesh_normalnum[mesh_id] = nn
        if lean.texcoords is None:
            render_model.mesh_texcoordnum[mesh_id] = 0
        else:
            ta = int(model.mesh_texcoordadr[mesh_id])
            render_model.mesh_texcoord[ta:ta + nt] = lean.texcoords
            render_model.mesh_facetexcoord[fa:fa + nf] = lean.face_texcoords
            render_model.mesh_texcoordnum[mesh_id] = nt
        stats.meshes_decimated += 1
        stats.faces_before += len(faces)
        stats.faces_after += nf
    return render_model, stats
