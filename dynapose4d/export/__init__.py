"""Exporting the 4D result as meshes: mesh.py: one coloured triangle mesh from activated Gaussians (a density
grid, marching cubes at a density threshold, small pieces dropped, quadric decimation to a face budget, vertex
colours from the Gaussians' colour field); gltf.py: the animated GLB (morph targets); animated.py: the canonical
mesh carried by the trained deformation to every frame (scripts/export.py)."""

FORMATS = ("glb", "obj", "ply")  # one animated GLB, or one mesh file per driving frame
