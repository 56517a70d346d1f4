"""Decimated visual meshes for lean rendering: the maths on closed-form meshes, the cache, and
the promise that physics never changes."""

from __future__ import annotations

import copy
import re

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from vla_envs import lean_meshes
from vla_envs.lean_meshes import (
    DEFAULT_FACE_BUDGET,
    closest_points_on_triangles,
    corner_normals,
    decimate,
    decimate_within,
    inward_faces,
    lean_render_model,
    surface_deviation_m,
    weld,
    weld_with_texcoords,
)
from vla_envs.rendering import CameraRenderer

# A unit cube stored as robosuite stores meshes: every face corner its own vertex.
_CUBE_CORNERS = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
_CUBE_FACES = np.array([
    [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
    [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],
])


def _soup(vertices, faces):
    return vertices[faces].reshape(-1, 3), np.arange(3 * len(faces)).reshape(-1, 3)


def _grid(n: int, z: float = 0.0):
    """An n x n grid of unit squares in the plane z, two triangles each, counter-clockwise from +z."""
    xs, ys = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    vertices = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, z)], axis=1).astype(float)
    index = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = index[:-1, :-1].ravel(), index[1:, :-1].ravel(), index[1:, 1:].ravel(), index[:-1, 1:].ravel()
    return vertices, np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])


def _sphere(subdivisions: int = 4):
    """An icosphere of radius 1 (20 x 4**subdivisions faces)."""
    t = (1 + 5 ** 0.5) / 2
    vertices = [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
                [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]]
    faces = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
             [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
             [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    vertices = [np.array(v, float) / np.linalg.norm(v) for v in vertices]
    for _ in range(subdivisions):
        midpoints: dict[tuple[int, int], int] = {}

        def midpoint(i, j):
            key = (min(i, j), max(i, j))
            if key not in midpoints:
                m = vertices[i] + vertices[j]
                vertices.append(m / np.linalg.norm(m))
                midpoints[key] = len(vertices) - 1
            return midpoints[key]

        new_faces = []
        for a, b, c in faces:
            ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
            new_faces += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        faces = new_faces
    return np.array(vertices), np.array(faces)


def _outward_face_normals(vertices, faces):
    corners = vertices[faces]
    return np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])


# -- the maths -------------------------------------------------------------------------------

def test_weld_turns_a_triangle_soup_back_into_a_closed_cube():
    vertices, faces = weld(*_soup(_CUBE_CORNERS, _CUBE_FACES))
    assert len(vertices) == 8 and len(faces) == 12
    np.testing.assert_array_equal(vertices[faces], _CUBE_CORNERS[_CUBE_FACES])


def test_weld_drops_faces_that_collapse():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0]], float)  # vertex 3 duplicates 1
    _, faces = weld(vertices, np.array([[0, 1, 2], [0, 1, 3]]))
    assert len(faces) == 1


def test_corner_normals_keep_a_cubes_edges_hard():
    """Every cube edge is 90 degrees, sharper than the crease angle: each corner gets its own face's
    normal exactly, as the split vertices of the original drew it."""
    normals = corner_normals(_CUBE_CORNERS, _CUBE_FACES)
    face = _outward_face_normals(_CUBE_CORNERS, _CUBE_FACES)
    face /= np.linalg.norm(face, axis=1, keepdims=True)
    np.testing.assert_allclose(normals, np.repeat(face[:, None], 3, axis=1), atol=1e-12)
    assert (np.einsum("ij,ij->i", face, _CUBE_CORNERS[_CUBE_FACES].mean(1) - 0.5) > 0).all()  # outward


def test_corner_normals_are_smooth_on_a_sphere():
    """On a finely tessellated unit sphere a smoothed normal points along its vertex's radius."""
    vertices, faces = _sphere(3)
    normals = corner_normals(vertices, faces)
    cosine = np.einsum("fkd,fkd->fk", normals, vertices[faces])
    assert cosine.min() > 0.999


def test_closest_points_on_triangles_in_every_region():
    a, b, c = np.array([0.0, 0, 0]), np.array([1.0, 0, 0]), np.array([0.0, 1, 0])
    points = np.array([[0.2, 0.2, 5], [-1, -1, 0], [3, -1, 0], [-1, 3, 0], [0.5, -2, 0], [-2, 0.5, 0], [1, 1, 0]])
    expected = np.array([[0.2, 0.2, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0], [0.5, 0, 0], [0, 0.5, 0], [0.5, 0.5, 0]])
    n = len(points)
    got = closest_points_on_triangles(points, np.tile(a, (n, 1)), np.tile(b, (n, 1)), np.tile(c, (n, 1)))
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_surface_deviation_of_a_plane_moved_one_millimetre_is_one_millimetre():
    vertices, faces = _grid(8)
    moved, moved_faces = _grid(2, z=0.001)
    moved[:, :2] *= 4  # the same 8 x 8 square in 8 coarse triangles, 1 mm above
    lean = lean_meshes.LeanMesh(moved.astype(np.float32), moved_faces.astype(np.int32), None, None)
    assert surface_deviation_m(vertices, faces, lean) == pytest.approx(0.001, rel=1e-4)


def test_decimating_a_sphere_reaches_the_budget_when_the_tolerance_allows_it():
    vertices, faces = _sphere(4)  # 5,120 faces, radius 1 m
    lean = decimate(vertices, faces, _outward_face_normals(vertices, faces), 500, tolerance_m=0.05)
    assert 480 <= len(lean.faces) <= 500
    assert lean.face_normals.shape == lean.faces.shape and lean.face_normals.max() < len(lean.normals)
    assert len(lean.normals) < 3 * len(lean.faces)  # smooth corners share normals
    radius = np.linalg.norm(lean.vertices, axis=1)
    assert np.abs(radius - 1).max() < 0.02  # vertices stay on the sphere
    assert 0 < surface_deviation_m(vertices, faces, lean) < 0.05
    # normals still point outward, along the radius
    assert np.einsum("fkd,fkd->fk", lean.normals[lean.face_normals], lean.vertices[lean.faces]).min() > 0.95


def test_decimation_stops_at_the_tolerance_before_the_budget():
    """500 faces would move a 1 m sphere's surface by about 2 cm (chord sagitta): with a 1 cm
    tolerance meshoptimizer stops earlier by its own estimate, and ``decimate_within`` raises
    the budget until the measured deviation is within it."""
    vertices, faces = _sphere(4)
    normals = _outward_face_normals(vertices, faces)
    assert len(decimate(vertices, faces, normals, 500, tolerance_m=0.01).faces) > 500
    lean = decimate_within(vertices, faces, normals, 500, tolerance_m=0.01)
    assert 500 < len(lean.faces) < len(faces)
    assert surface_deviation_m(vertices, faces, lean) <= 0.01
    assert decimate_within(vertices, faces, normals, 500, tolerance_m=1e-6) is None  # only the original is


def test_decimated_normals_follow_the_stored_normals_direction():
    """A mesh that stores its normals against its winding keeps that convention when decimated."""
    vertices, faces = _sphere(3)
    inward = -_outward_face_normals(vertices, faces)
    lean = decimate(vertices, faces, inward, 300)
    assert np.einsum("fkd,fkd->fk", lean.normals[lean.face_normals], lean.vertices[lean.faces]).max() < -0.9


# -- textured meshes ---------------------------------------------------------------------------

def _two_chart_grid(n: int = 16):
    """An n x n grid whose texture is mapped by two charts that meet at the seam x = n / 2: on
    the left u = x / n, on the right u = x / n + 0.25 (so seam positions carry two coordinates),
    and v = y / n on both. Returns the soup (vertices, faces), each corner's coordinate
    (f, 3, 2), and the map of each chart as a function of position."""
    vertices, faces = _grid(n)
    charts = {"left": lambda p: np.stack([p[..., 0] / n, p[..., 1] / n], -1),
              "right": lambda p: np.stack([p[..., 0] / n + 0.25, p[..., 1] / n], -1)}
    corners = vertices[faces]
    right = corners[:, :, 0].mean(axis=1) > n / 2
    texcoords = np.where(right[:, None, None], charts["right"](corners), charts["left"](corners))
    soup_vertices, soup_faces = _soup(vertices, faces)
    return soup_vertices, soup_faces, texcoords, charts


def test_weld_with_texcoords_welds_positions_and_keeps_a_seams_two_coordinates():
    n = 16
    vertices, faces, texcoords, _ = _two_chart_grid(n)
    positions, position_of_wedge, wedge_texcoords, wedge_faces = weld_with_texcoords(vertices, faces, texcoords)
    assert len(positions) == (n + 1) ** 2
    assert len(position_of_wedge) == (n + 1) ** 2 + (n + 1)  # the seam column twice
    assert len(wedge_faces) == len(faces)
    np.testing.assert_array_equal(positions[position_of_wedge][wedge_faces], vertices[faces])
    np.testing.assert_array_equal(wedge_texcoords[wedge_faces], texcoords)


def test_decimated_texture_coordinates_stay_on_each_charts_map_and_the_seam_stays():
    """A flat grid with a texture map linear on each chart decimates without error: every
    decimated face keeps its corners' coordinates on its own chart's map, so no face straddles
    the seam with the coordinates of the other side."""
    n = 16
    vertices, faces, texcoords, charts = _two_chart_grid(n)
    lean = decimate(vertices, faces, _outward_face_normals(vertices, faces), 64, corner_texcoords=texcoords)
    assert len(lean.faces) <= 64 and lean.face_texcoords.shape == lean.faces.shape
    corners = lean.vertices[lean.faces].astype(np.float64)
    got = lean.texcoords[lean.face_texcoords]
    right = corners[:, :, 0].mean(axis=1) > n / 2
    want = np.where(right[:, None, None], charts["right"](corners), charts["left"](corners))
    np.testing.assert_allclose(got, want, atol=1e-6)
    # the seam survives: a corner on it has the left coordinate on the left, the right one on the right
    on_seam = corners[:, :, 0] == n / 2
    assert on_seam[right].any() and on_seam[~right].any()
    # winding (all faces up, +z) is kept
    assert (_outward_face_normals(lean.vertices, lean.faces)[:, 2] > 0).all()


def test_a_textured_mesh_with_detail_finer_than_decimation_keeps_its_original():
    """A 0.2 m plate whose vertices alternate 3 mm above and below its plane (a weave's bumps)
    decimates within the 10 mm tolerance by flattening them: a mean deviation of 0.7 mm.
    Untextured it is decimated; textured (its texture drawn on the bumps, as a woven basket's)
    it keeps its original."""
    n = 64
    vertices, faces = _grid(n)
    parity = (vertices[:, 0] + vertices[:, 1]) % 2
    vertices = vertices * (0.2 / n)
    vertices[:, 2] = np.where(parity == 0, 0.003, -0.003)
    normals = _outward_face_normals(vertices, faces)
    texcoords = vertices[faces][:, :, :2] / 0.2
    plain = decimate_within(vertices, faces, normals, 200)
    assert plain is not None and len(plain.faces) < len(faces) / 4
    distances = lean_meshes.surface_distances_m(vertices, faces, plain)
    assert np.percentile(distances, 99) <= lean_meshes.TOLERANCE_M
    assert distances.mean() > lean_meshes.TEXTURED_MEAN_DEVIATION_M
    assert decimate_within(vertices, faces, normals, 200, corner_texcoords=texcoords) is None
    # without the bumps the same textured plate is decimated (to 800 faces: at 400 its long
    # slivers make the nearest-centre search overestimate distances on the flat plate, 0.31 mm
    # on average)
    flat = vertices.copy()
    flat[:, 2] = 0
    lean = decimate_within(flat, faces, normals, 800, corner_texcoords=texcoords)
    assert lean is not None and len(lean.faces) <= 800


def _thin_plate():
    """A closed 8 x 8 x 0.02 box whose top and bottom are tessellated differently (16 x 16 and
    11 x 11 cells), wound outward: a thin shell like LIBERO's plate."""
    parts = []

    def add(vertices, faces):
        offset = sum(len(v) for v, _ in parts)
        parts.append((vertices, faces + offset))

    top_v, top_f = _grid(16, z=0.01)
    add(top_v * [0.5, 0.5, 1], top_f)
    bottom_v, bottom_f = _grid(11, z=-0.01)
    add(bottom_v * [8 / 11, 8 / 11, 1], bottom_f[:, ::-1])
    for axis in (0, 1):  # the four side walls, one quad each
        for at, outward in ((0.0, -1), (8.0, 1)):
            quad = np.zeros((4, 3))
            quad[:, axis] = at
            quad[:, 1 - axis] = [0, 8, 8, 0]
            quad[:, 2] = [-0.01, -0.01, 0.01, 0.01]
            quad_faces = np.array([[0, 1, 2], [0, 2, 3]])
            normal = _outward_face_normals(quad, quad_faces)[0, axis]
            add(quad, quad_faces if normal * outward > 0 else quad_faces[:, ::-1])
    vertices = np.concatenate([v for v, _ in parts])
    faces = np.concatenate([f for _, f in parts])
    return vertices, faces


def test_a_thin_shell_keeps_each_sides_winding_and_normal_convention():
    """Decimation keeps each side of a shell 2 cm thick facing its own way, and each face's
    normal convention is the one of the nearest original *triangle*: here the top stores its
    normals against its winding, the rest along it. With 0.5 m and 0.73 m cells a top face's
    nearest original *centre* is often on the bottom, and that rule gets the top wrong."""
    vertices, faces = _thin_plate()
    winding = _outward_face_normals(vertices, faces)
    top_original = np.isclose(vertices[faces][:, :, 2].mean(axis=1), 0.01)
    stored = np.where(top_original[:, None], -winding, winding)
    lean = decimate(vertices, faces, stored, 40)
    lean_winding = _outward_face_normals(lean.vertices, lean.faces)
    centre_z = lean.vertices[lean.faces][:, :, 2].mean(axis=1)
    top, bottom = np.isclose(centre_z, 0.01), np.isclose(centre_z, -0.01)
    assert top.any() and bottom.any()
    assert (lean_winding[top, 2] > 0).all() and (lean_winding[bottom, 2] < 0).all()
    normal_z = lean.normals[lean.face_normals][:, :, 2]
    assert (normal_z[top] < 0).all() and (normal_z[bottom] < 0).all()
    by_centre = inward_faces(lean.vertices.astype(np.float64), lean.faces, vertices, faces, stored, candidates=1)
    assert not by_centre[top].all()


def _textured_sphere_xml(stacks: int = 40, slices: int = 80, radius: float = 0.1) -> str:
    """A latitude-longitude sphere mesh (its seam column and pole rows repeated, each with its
    own texture coordinate) under a checker texture, one fixed camera on it."""
    lat = np.linspace(0, np.pi, stacks + 1)
    lon = np.linspace(0, 2 * np.pi, slices + 1)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    vertices = radius * np.stack([np.sin(la) * np.cos(lo), np.sin(la) * np.sin(lo), np.cos(la)], -1).reshape(-1, 3)
    texcoords = np.stack([8 * lo / (2 * np.pi), 4 * la / np.pi], -1).reshape(-1, 2)  # 16 x 8 checker cells
    index = np.arange((stacks + 1) * (slices + 1)).reshape(stacks + 1, slices + 1)
    a, b = index[:-1, :-1].ravel(), index[1:, :-1].ravel()
    c, d = index[1:, 1:].ravel(), index[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    corners = vertices[faces]
    area = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    faces = faces[area > 1e-12]  # the slivers at the poles
    outward = np.einsum("ij,ij->i", _outward_face_normals(vertices, faces), vertices[faces].mean(1)) > 0
    faces = np.where(outward[:, None], faces, faces[:, ::-1])

    def numbers(array):
        return " ".join(f"{x:.9g}" for x in np.asarray(array).ravel())

    return f"""
<mujoco>
  <visual><global offwidth="128" offheight="128"/></visual>
  <asset>
    <texture name="checker" type="2d" builtin="checker" rgb1="1 1 1" rgb2="0.1 0.2 0.8" width="256" height="256"/>
    <material name="checker" texture="checker"/>
    <mesh name="globe" vertex="{numbers(vertices)}" texcoord="{numbers(texcoords)}" face="{numbers(faces)}"/>
  </asset>
  <worldbody>
    <light pos="0 -1 1" dir="0 1 -1"/>
    <camera name="eye" pos="0 -0.4 0.1" xyaxes="1 0 0 0 0.25 1"/>
    <geom type="mesh" mesh="globe" material="checker" contype="0" conaffinity="0" group="1"/>
  </worldbody>
</mujoco>
"""


def test_a_textured_mesh_is_decimated_with_its_texture_where_it_was(empty_cache, monkeypatch):
    """A checker-textured sphere of 6,240 faces drawn at 2,000 (the textured factor set to 2;
    at 1,000 it would stray 0.5 mm on average, over ``TEXTURED_MEAN_DEVIATION_M``): the same
    picture to within 1/255 on average (0.86 here: the checker's edges follow the coarser
    surface), far closer than the same mesh drawn without texture coordinates (19). At the
    default factor (4) it keeps 3,999 faces."""
    model = mujoco.MjModel.from_xml_string(_textured_sphere_xml())
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    assert lean_meshes.visual_only_meshes(model) == [0] and lean_meshes.textured_meshes(model) == {0}
    _, stats = lean_render_model(model, DEFAULT_FACE_BUDGET)
    assert 3000 < stats.faces_after <= lean_meshes.TEXTURED_FACE_BUDGET_FACTOR * DEFAULT_FACE_BUDGET
    monkeypatch.setattr(lean_meshes, "TEXTURED_FACE_BUDGET_FACTOR", 2)
    render_model, stats = lean_render_model(model, DEFAULT_FACE_BUDGET)
    assert stats.meshes_decimated == 1 and stats.faces_after <= 2 * DEFAULT_FACE_BUDGET < stats.faces_before
    assert 0 < render_model.mesh_texcoordnum[0] < model.mesh_texcoordnum[0]
    untextured = copy.copy(model)  # the same mesh with its texture coordinates left out
    untextured.mesh_texcoordadr[0] = -1
    images = {}
    for name, drawn, budget in (("decimated", model, DEFAULT_FACE_BUDGET), ("original", model, None),
                                ("untextured", untextured, None)):
        renderer = CameraRenderer("lean", 128, 128, mesh_face_budget=budget)
        try:
            renderer.bind(drawn)
            images[name] = renderer.render(data, "eye", 128, 128).astype(int)
        finally:
            renderer.close()
    assert np.abs(images["original"] - images["original"][:, ::-1]).mean() > 5  # the checker shows
    assert np.abs(images["decimated"] - images["original"]).mean() < 1.0
    assert np.abs(images["untextured"] - images["original"]).mean() > 10


@pytest.mark.parametrize("budget", [0, 15, -5, 2.5, True, "1000"])
def test_bad_face_budget_is_refused_naming_the_field(budget):
    with pytest.raises(ValueError, match="mesh_face_budget"):
        CameraRenderer("lean", 64, 64, mesh_face_budget=budget)


# -- a real robosuite scene ------------------------------------------------------------------

@pytest.fixture(scope="module")
def lift_model():
    env = gym.make("vla_envs/Lift-v0", obs_mode="state")
    env.reset(seed=0)
    sim = env.unwrapped.robosuite_env.sim
    yield sim.model._model, sim.data._data
    env.close()


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VLA_ENVS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(lean_meshes, "_MEMORY", {})
    return tmp_path / "meshes"


def test_lean_model_decimates_visual_meshes_only_and_leaves_the_physics_model_alone(lift_model, empty_cache):
    model, _ = lift_model
    before = {name: np.array(getattr(model, name)) for name in ("mesh_vert", "mesh_face", "mesh_normal", "mesh_facenum")}
    render_model, stats = lean_render_model(model, DEFAULT_FACE_BUDGET)
    for name, array in before.items():
        np.testing.assert_array_equal(getattr(model, name), array)
    assert stats.meshes_decimated >= 10 and stats.faces_after < stats.faces_before / 4
    changed = np.flatnonzero(render_model.mesh_facenum != model.mesh_facenum)
    assert set(changed) <= set(lean_meshes.visual_only_meshes(model))
    for geom in range(model.ngeom):  # no mesh of a colliding geom was touched
        if model.geom_contype[geom] or model.geom_conaffinity[geom]:
            assert model.geom_type[geom] != mujoco.mjtGeom.mjGEOM_MESH or model.geom_dataid[geom] not in changed


def test_cache_is_reused_across_processes_and_a_corrupt_entry_is_rebuilt(lift_model, empty_cache, monkeypatch):
    model, _ = lift_model
    _, first = lean_render_model(model, DEFAULT_FACE_BUDGET)
    assert first.computed > 0 and first.loaded_from_disk == 0
    entries = sorted(empty_cache.glob("*.npz"))
    assert len(entries) == first.computed
    assert not list(empty_cache.glob("*.tmp"))  # written atomically: no temporaries left

    monkeypatch.setattr(lean_meshes, "_MEMORY", {})  # a new process: only the disk cache
    fresh_model, second = lean_render_model(model, DEFAULT_FACE_BUDGET)
    assert second.computed == 0 and second.loaded_from_disk == first.computed

    entries[0].write_bytes(b"not an npz")
    monkeypatch.setattr(lean_meshes, "_MEMORY", {})
    with pytest.warns(UserWarning, match=re.escape(str(entries[0]))):
        rebuilt_model, third = lean_render_model(model, DEFAULT_FACE_BUDGET)
    assert third.rebuilt_corrupt == 1 and third.computed == 1
    np.testing.assert_array_equal(rebuilt_model.mesh_vert, fresh_model.mesh_vert)
    np.load(entries[0])  # rewritten, readable again

    _, in_memory = lean_render_model(model, DEFAULT_FACE_BUDGET)
    assert in_memory.from_memory == first.computed and in_memory.computed == 0


def _entry(path):
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


@pytest.mark.parametrize("tamper", ["moved vertices, hash kept", "no hash (older version)", "another mesh's entry"])
def test_a_cache_entry_that_does_not_match_its_hash_is_rebuilt_never_drawn(lift_model, empty_cache, monkeypatch, tamper):
    """Well-formed entries (shapes, dtypes and indices all valid) with the wrong contents used
    to be drawn as they were; now each is discarded with a warning naming it, and rebuilt."""
    model, _ = lift_model
    original_model, first = lean_render_model(model, DEFAULT_FACE_BUDGET)
    entries = [path for path in sorted(empty_cache.glob("*.npz")) if not _entry(path)["keep_original"]]
    target = entries[0]
    pristine = _entry(target)
    arrays = dict(pristine)
    if tamper == "moved vertices, hash kept":
        arrays["vertices"] = arrays["vertices"] + np.float32(0.05)
    elif tamper == "no hash (older version)":
        del arrays["sha256"]
    else:
        arrays = _entry(entries[1])  # valid, with its own matching hash, but for another mesh
    with open(target, "wb") as handle:
        np.savez(handle, **arrays)

    monkeypatch.setattr(lean_meshes, "_MEMORY", {})  # a new process: only the disk cache
    with pytest.warns(UserWarning, match=re.escape(str(target))):
        rebuilt_model, stats = lean_render_model(model, DEFAULT_FACE_BUDGET)
    assert stats.rebuilt_corrupt == 1 and stats.computed == 1 and stats.loaded_from_disk == first.computed - 1
    np.testing.assert_array_equal(rebuilt_model.mesh_vert, original_model.mesh_vert)
    rewritten = _entry(target)
    assert rewritten.keys() == pristine.keys()
    for name, array in pristine.items():
        np.testing.assert_array_equal(rewritten[name], array)


def test_full_quality_draws_robosuites_meshes(lift_model):
    model, data = lift_model
    full = CameraRenderer("full", 64, 64)
    assert full.mesh_face_budget is None
    full.bind(model)
    reference = CameraRenderer("full", 64, 64, mesh_face_budget=None)
    reference.bind(model)
    try:
        assert full.last_decimation is None
        np.testing.assert_array_equal(full.render(data, "agentview", 64, 64), reference.render(data, "agentview", 64, 64))
    finally:
        full.close()
        reference.close()


@pytest.mark.parametrize("size", [64, 128])
def test_decimated_images_are_upright_uint8_and_close_to_robosuites_meshes(lift_model, size):
    model, data = lift_model
    lean = CameraRenderer("lean", size, size)
    meshes = CameraRenderer("lean", size, size, mesh_face_budget=None)
    try:
        lean.bind(model)
        meshes.bind(model)
        for camera in ("agentview", "robot0_eye_in_hand"):
            got = lean.render(data, camera, size, size)
            want = meshes.render(data, camera, size, size).astype(int)
            assert got.shape == (size, size, 3) and got.dtype == np.uint8 and got.flags["C_CONTIGUOUS"]
            assert np.abs(got - want).mean() < 2.0
            assert np.abs(got[::-1] - want).mean() > 10  # upright, like the reference
    finally:
        lean.close()
        meshes.close()


def test_state_trajectories_are_bit_identical_with_and_without_decimation():
    trajectories = []
    for budget in (None, DEFAULT_FACE_BUDGET):
        env = gym.make("vla_envs/Lift-v0", obs_mode="state+rgb", image_size=64, mesh_face_budget=budget)
        rng = np.random.default_rng(7)
        obs, _ = env.reset(seed=11)
        states, images = [obs["state"]], [obs["image"]]
        for _ in range(40):
            obs, reward, *_ = env.step(rng.uniform(-1, 1, 7).astype(np.float32))
            states.append(np.append(obs["state"], reward))
            images.append(obs["image"])
        if budget is not None:
            assert env.unwrapped._renderer.last_decimation.meshes_decimated > 0
        env.close()
        trajectories.append((states, images))
    (states_a, images_a), (states_b, images_b) = trajectories
    for a, b in zip(states_a, states_b):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(images_a, images_b))  # the images did change


# -- frustum culling --------------------------------------------------------------------------

_FRUSTUM_XML = """
<mujoco>
  <worldbody>
    <camera name="eye" pos="0 0 0" fovy="90"/>
    <geom name="ahead" type="sphere" size="0.1" pos="0 0 -2"/>
    <geom name="behind" type="sphere" size="0.1" pos="0 0 2"/>
    <geom name="edge_in" type="sphere" size="0.1" pos="0 2.1 -2"/>
    <geom name="above" type="sphere" size="0.1" pos="0 3 -2"/>
    <geom name="right_wide" type="sphere" size="0.1" pos="3 0 -2"/>
    <geom name="floor" type="plane" size="0 0 1" pos="0 0 100"/>
  </worldbody>
</mujoco>
"""


def test_geoms_in_view_against_a_90_degree_frustum():
    """fovy 90: the side planes are |y| = depth. A sphere of radius r at depth 2 is in view up to
    |y| = 2 + r * sqrt(2); at aspect 2 the horizontal planes are |x| = 2 * depth."""
    from vla_envs.frustum import geoms_in_view

    model = mujoco.MjModel.from_xml_string(_FRUSTUM_XML)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) for g in range(model.ngeom)]
    seen = dict(zip(names, geoms_in_view(model, data, 0, aspect=1.0, margin_m=0.0)))
    assert seen == {"ahead": True, "behind": False, "edge_in": True, "above": False,
                    "right_wide": False, "floor": True}
    wide = dict(zip(names, geoms_in_view(model, data, 0, aspect=2.0, margin_m=0.0)))
    assert wide["right_wide"] and not wide["above"]


@pytest.mark.parametrize("task", ["Lift", "Door", "PickPlaceCan"])
def test_culling_what_a_camera_cannot_see_changes_no_pixel(task):
    env = gym.make(f"vla_envs/{task}-v0", obs_mode="state", max_episode_steps=-1)
    rng = np.random.default_rng(3)
    culled, plain = CameraRenderer("lean", 64, 64), CameraRenderer("lean", 64, 64, cull_outside_view=False)
    try:
        left_out = 0
        for seed in range(2):
            env.reset(seed=seed)
            for step in range(30):
                env.step(rng.uniform(-1, 1, 7).astype(np.float32))
                if step % 10:
                    continue
                sim = env.unwrapped.robosuite_env.sim
                culled.bind(sim.model._model)
                plain.bind(sim.model._model)
                for camera in ("agentview", "robot0_eye_in_hand"):
                    np.testing.assert_array_equal(culled.render(sim.data._data, camera, 64, 64),
                                                  plain.render(sim.data._data, camera, 64, 64))
                    left_out += int((culled._render_model.geom_group == 5).sum())
        assert left_out > 0  # the test exercised culling
    finally:
        culled.close()
        plain.close()
        env.close()
