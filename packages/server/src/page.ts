/**
 * GET /: one self-contained page (inline CSS and JS, nothing fetched from
 * elsewhere) to type a prompt and watch /gen stream it. It reads the stream
 * with fetch rather than EventSource, so it can send an API key and stop.
 */
export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Rama</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  textarea { width: 100%; box-sizing: border-box; font: inherit; }
  .row { display: flex; gap: 1rem; flex-wrap: wrap; align-items: center; margin: .5rem 0; }
  input[type=number] { width: 5rem; }
  #out { white-space: pre-wrap; border: 1px solid #ccc; border-radius: 4px; padding: .75rem; min-height: 6rem; }
  #out .prompt { color: #777; }
  #stats { color: #555; font-size: .9rem; }
</style>
</head>
<body>
<h1>Rama</h1>
<form id="f">
  <textarea id="prompt" rows="3" placeholder="Once upon a time">Once upon a time</textarea>
  <div class="row">
    <label>temperature <input id="temperature" type="number" min="0" max="2" step="0.1" value="0.8"></label>
    <label>steps <input id="steps" type="number" min="0" value="256"></label>
    <label>seed <input id="seed" type="number" placeholder="random"></label>
    <label><input id="chat" type="checkbox"> chat</label>
    <label>API key <input id="key" type="password" autocomplete="off"></label>
  </div>
  <div class="row"><button id="go" type="submit">Generate</button><button id="stop" type="button" disabled>Stop</button></div>
</form>
<div id="out"></div>
<p id="stats"></p>
<script>
const $ = (id) => document.getElementById(id);
let controller = null;
$('stop').onclick = () => controller && controller.abort();
$('f').onsubmit = async (ev) => {
  ev.preventDefault();
  controller = new AbortController();
  $('go').disabled = true; $('stop').disabled = false; $('stats').textContent = '';
  const out = $('out'); out.textContent = '';
  const chat = $('chat').checked;
  if (!chat) { const p = document.createElement('span'); p.className = 'prompt'; p.textContent = $('prompt').value; out.append(p); }
  const q = new URLSearchParams({ prompt: $('prompt').value, temperature: $('temperature').value, steps: $('steps').value });
  if ($('seed').value) q.set('seed', $('seed').value);
  if (chat) q.set('chat', '1');
  const headers = $('key').value ? { authorization: 'Bearer ' + $('key').value } : {};
  try {
    const res = await fetch('gen?' + q, { headers, signal: controller.signal });
    if (!res.ok) { const e = await res.json().catch(() => null); throw new Error(e && e.error ? e.error.message : res.status + ' ' + res.statusText); }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf('\\n\\n')) >= 0) {
        const block = buf.slice(0, i); buf = buf.slice(i + 2);
        const event = (block.match(/^event: (.*)$/m) || [])[1] || 'message';
        const data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || 'null');
        if (event === 'end') $('stats').textContent = data.completion_tokens + ' tokens, ' + data.tokens_per_second.toFixed(1) + ' tokens/s (' + data.reason + ')';
        else if (data && data.error) throw new Error(data.error.message);
        else if (data) out.append(data.text);
      }
    }
  } catch (e) {
    if (e.name !== 'AbortError') $('stats').textContent = 'Error: ' + e.message;
  } finally {
    $('go').disabled = false; $('stop').disabled = true; controller = null;
  }
};
</script>
</body>
</html>
`;
