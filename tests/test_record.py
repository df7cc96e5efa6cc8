"""`asyncsim record`: a real run's tasks and HTTP exchanges, read where the client sees them (issue 15)."""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

import asyncsim as a
from asyncsim.cli import main
from asyncsim.fitting import fit_service, read_calls, services_yaml
from asyncsim.real.http import serving
from asyncsim.record import RecordError, record_program

pytest.importorskip("aiohttp")

CLIENT = textwrap.dedent('''
    import asyncio, os, sys, time
    import aiohttp

    async def one(session, i):
        for attempt in range(6):
            async with session.post(os.environ["URL"] + "/chat/completions",
                                    json={"model": "llm", "messages": [{"role": "user", "content": str(i)}]}) as r:
                await r.read()
                if r.status != 429:
                    return r.status
                await asyncio.sleep(float(r.headers["retry-after"]))
        return 429

    async def main():
        async with aiohttp.ClientSession() as session:
            time.sleep(0.01)  # work on the loop
            print(await asyncio.gather(*(one(session, i) for i in range(int(sys.argv[1])))))

    asyncio.run(main())
''')


def test_a_real_run_is_recorded_with_every_attempt_its_status_and_tokens(tmp_path, monkeypatch, capsys):
    spec = {"latency": 0.2, "tokens": {"input": 120, "output": 30}, "rate_limit": {"rpm": 600, "burst_requests": 2},
            "server": {"retry_after": "ceil_seconds"}}
    w = a.Workload(arrivals=a.Batch(count=1), task=(a.io(0.0),), services={"llm": a.Service.model_validate(spec)})
    program = tmp_path / "client.py"
    program.write_text(CLIENT)
    with serving(w) as (url, log):
        monkeypatch.setenv("URL", url)
        result = record_program(program, ["6"], tmp_path / "run")
        served = [json.loads(line) for line in log.read_text().splitlines()]
    rows = [json.loads(line) for line in (tmp_path / "run" / "calls.jsonl").read_text().splitlines()]
    assert sorted(r["status"] for r in rows) == sorted(r["status"] for r in served)  # every attempt, as served
    assert sum(r["status"] == 429 for r in rows) >= 4  # a burst of 2 for 6 at once
    ok = [r for r in rows if r["status"] == 200]
    assert {(r["tokens_in"], r["tokens_out"]) for r in ok} == {(120, 30)}
    assert all(r["retry_after"] >= 1 for r in rows if r["status"] == 429)
    assert all(0.19 < r["end"] - r["t"] < 1.0 for r in ok)  # the server's 0.2 s, seen by the client
    assert (result.tasks, result.completed) == (6, 6)
    assert result.services[next(iter(result.services))].rate_limited == sum(r["status"] == 429 for r in rows)
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["tasks"] == 6
    fit = fit_service("127.0.0.1", read_calls(tmp_path / "run" / "calls.jsonl"))  # `fit` reads what it wrote
    assert fit.latency is not None
    assert fit.latency.dist.mean == pytest.approx(0.2, rel=0.25)
    assert fit.retry_after == "ceil_seconds"
    assert fit.burst_requests == 2  # the most x-ratelimit-remaining-requests said (1), plus one
    # and `check` runs the recorded program in the twin with the fitted services, side by side with the run
    fitted = tmp_path / "fitted.yaml"
    fitted.write_text(services_yaml([fit], "calls.jsonl"))
    capsys.readouterr()  # the program's own prints so far
    assert main(["check", str(fitted), "--against", str(tmp_path / "run"), "--json", "--tolerance", "0.5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["figures"]["completed"] == {"recorded": 6, "twin": 6}
    assert abs(out["error"]) < 0.5


TLS = textwrap.dedent('''
    import asyncio, ssl, sys
    import aiohttp
    from aiohttp import web

    async def main(cert, key):
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(cert, key)
        app = web.Application()

        async def hello(request):
            await asyncio.sleep(0.05)
            return web.json_response({"usage": {"prompt_tokens": 7, "completion_tokens": 3}})

        app.router.add_post("/v1/chat/completions", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        client = ssl.create_default_context(cafile=cert)
        async with aiohttp.ClientSession() as session:
            async def one():
                async with session.post(f"https://localhost:{port}/v1/chat/completions", json={}, ssl=client) as r:
                    return (await r.json())["usage"]
            print(await asyncio.gather(*(one() for _ in range(3))))
        await runner.cleanup()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
''')


def test_tls_is_read_as_the_client_sees_it(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    program = tmp_path / "tls.py"
    program.write_text(TLS)
    record_program(program, [str(cert), str(key)], tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "calls.jsonl").read_text().splitlines()]
    seen = [(r["service"], r["status"], r["tokens_in"], r["tokens_out"]) for r in rows]
    assert seen == [("localhost", 200, 7, 3)] * 3


def test_the_command_records_and_keeps_what_a_failing_program_did(tmp_path, capsys):
    program = tmp_path / "fails.py"
    program.write_text("import asyncio\n\nasync def main():\n    await asyncio.sleep(0.05)\n"
                       "    raise ValueError('no')\n\nasyncio.run(main())\n")
    assert main(["record", "--out", str(tmp_path / "run"), "--", "python", str(program)]) == 1
    assert "fails.py stopped with ValueError: no; what it did until then is in" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "run.json").read_text())["failed"] == 1
    assert main(["record", "--out", str(tmp_path / "run")]) == 2
    with pytest.raises(RecordError, match="no program at"):
        record_program(tmp_path / "nope.py")
