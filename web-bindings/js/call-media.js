// The call's local media: the camera and microphone (getUserMedia), the device list, the
// screen (getDisplayMedia), and what to tell the user when the browser says no.

/** A clear message for a getUserMedia / getDisplayMedia failure, and a short code. */
export function mediaError (e, what = 'camera and microphone') {
  const name = e?.name ?? ''
  switch (name) {
    case 'NotAllowedError':
    case 'PermissionDeniedError':
    case 'SecurityError':
      return {
        code: 'permission',
        message: `Permission to use your ${what} was denied. You can still see and hear the others; allow the ${what} in the browser's site settings and reload to join with them.`
      }
    case 'NotFoundError':
    case 'DevicesNotFoundError':
    case 'OverconstrainedError':
      return {
        code: 'no-device',
        message: `No ${what} was found. You can still see and hear the others; plug one in and pick it from the device list.`
      }
    case 'NotReadableError':
    case 'TrackStartError':
    case 'AbortError':
      return {
        code: 'device-busy',
        message: `Your ${what} could not be started (another application may be using it). You can still see and hear the others.`
      }
    default:
      return { code: 'device', message: `Could not use your ${what}: ${e?.message ?? e}. You can still see and hear the others.` }
  }
}

/**
 * The camera and microphone, as much of them as there is: both, else the microphone alone,
 * else the camera alone. Resolves {stream, error}: stream null when neither could be had
 * (error then says why); error set but a stream when only one of the two could be had.
 */
export async function openLocalMedia (mediaDevices, { audioDeviceId, videoDeviceId } = {}) {
  if (!mediaDevices?.getUserMedia) {
    return { stream: null, error: { code: 'no-device', message: 'This browser offers no camera or microphone here (it needs https or localhost). You can still see and hear the others.' } }
  }
  const audio = audioDeviceId ? { deviceId: { exact: audioDeviceId } } : true
  const video = { width: { ideal: 640 }, height: { ideal: 360 }, ...(videoDeviceId ? { deviceId: { exact: videoDeviceId } } : {}) }
  try {
    return { stream: await mediaDevices.getUserMedia({ audio, video }), error: null }
  } catch (e) {
    const first = mediaError(e)
    // Denied is denied: asking again for one of them would only ask the user twice.
    if (first.code === 'permission') return { stream: null, error: first }
    for (const [constraints, missing] of [[{ audio }, 'camera'], [{ video }, 'microphone']]) {
      try {
        const stream = await mediaDevices.getUserMedia(constraints)
        return { stream, error: { code: 'no-device', message: `No ${missing} could be used (${first.message.split('.')[0].toLowerCase()}); the call goes on without it.` } }
      } catch {}
    }
    return { stream: null, error: first }
  }
}

/** The devices by kind: {audioinput: [{deviceId, label}], videoinput: [...]}. */
export async function listDevices (mediaDevices) {
  const out = { audioinput: [], videoinput: [] }
  if (!mediaDevices?.enumerateDevices) return out
  let all = []
  try { all = await mediaDevices.enumerateDevices() } catch { return out }
  for (const d of all) {
    if (!out[d.kind]) continue
    out[d.kind].push({ deviceId: d.deviceId, label: d.label || `${d.kind === 'audioinput' ? 'Microphone' : 'Camera'} ${out[d.kind].length + 1}` })
  }
  return out
}
