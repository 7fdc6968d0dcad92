// The order's model in 3D, coloured by wall thickness: an ES module over the vendored three.js (vendor/three,
// mapped by the import map in index.html), loaded by console.js only when an order's detail opens.
// The preview is the pricing service's GLB (pricing/preview.py): COLOR_0 red below the material's minimum
// wall, amber near it, neutral above; its node's extras name the minimum the colours were computed against.

import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";

let current = null;

// Draw the GLB in `buffer` into `container` (replacing what was there); resolves to the node's extras.
export async function showPreview(container, buffer) {
  disposePreview();
  const gltf = await new GLTFLoader().parseAsync(buffer, "");
  let mesh = null;
  let extras = {};
  gltf.scene.traverse((object) => {
    if (object.userData && object.userData.min_wall_mm !== undefined) extras = object.userData;
    if (!mesh && object.isMesh) mesh = object;
  });
  if (!mesh) throw new Error("the preview holds no mesh");
  mesh.geometry.computeVertexNormals();
  mesh.material = new THREE.MeshStandardMaterial({ vertexColors: true, metalness: 0.05, roughness: 0.65, side: THREE.DoubleSide });

  const width = Math.max(200, container.clientWidth || 340);
  const height = Math.round(width * 0.8);
  // preserveDrawingBuffer: the canvas can be read back (screenshots, the browser test's pixel count)
  const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  renderer.setSize(width, height);
  renderer.setClearColor(0xf5f6f8);
  renderer.domElement.dataset.testid = "preview-canvas";
  renderer.domElement.setAttribute("aria-label", "The model in 3D, coloured by wall thickness; drag to turn, scroll to zoom");
  renderer.domElement.setAttribute("role", "img");

  const scene = new THREE.Scene();
  scene.add(new THREE.HemisphereLight(0xffffff, 0x8a8f99, 1.6));
  const camera = new THREE.PerspectiveCamera(35, width / height, 0.01, 10000);
  camera.up.set(0, 0, 1); // models come in z-up (STL, 3MF)
  const light = new THREE.DirectionalLight(0xffffff, 1.4);
  light.position.set(0.3, 0.5, 1);
  camera.add(light); // the light follows the view
  scene.add(camera);
  scene.add(mesh);

  const box = new THREE.Box3().setFromObject(mesh);
  const centre = box.getCenter(new THREE.Vector3());
  const radius = Math.max(box.getSize(new THREE.Vector3()).length() / 2, 1e-3);
  // the bounding sphere of the box is generous: 0.8 of its fitting distance still frames the model
  const distance = radius / Math.sin(THREE.MathUtils.degToRad(camera.fov / 2)) * 0.8;
  camera.position.copy(centre).add(new THREE.Vector3(0.55, -0.65, 0.52).normalize().multiplyScalar(distance));
  camera.near = distance / 100;
  camera.far = distance * 10;
  camera.updateProjectionMatrix();

  const controls = new OrbitControls(camera, renderer.domElement);
  controls.target.copy(centre);
  const render = () => renderer.render(scene, camera);
  controls.addEventListener("change", render); // drawn on demand: no animation loop while idle
  controls.update();
  container.replaceChildren(renderer.domElement);
  render();
  current = { renderer, controls, mesh };
  return extras;
}

export function disposePreview() {
  if (!current) return;
  current.controls.dispose();
  current.mesh.geometry.dispose();
  current.mesh.material.dispose();
  current.renderer.dispose();
  current.renderer.domElement.remove();
  current = null;
}
