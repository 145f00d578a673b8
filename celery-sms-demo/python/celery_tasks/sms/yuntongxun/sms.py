"""sms.py: the ``CCP`` helper the blog's task calls, as a stand-in that sends nothing
(unless ``RONGLIAN_BASE_URL`` points it at a gateway, see below).

In the blog's project this module wraps the 容联云通讯 (yuntongxun) REST SDK:
``CCP`` is a singleton holding an authenticated client, and
``send_template_sms(to, datas, temp_id)`` returns 0 when the gateway answers
``statusCode == "000000"`` and -1 otherwise. Sending real SMS needs an account
and costs money, so this stand-in keeps the same class, the same method and
the same return value, and instead:

* prints one line (a worker shows task ``print()`` output as
  ``WARNING/<process>`` log lines, as the real SDK's debug prints would be);
* when ``SMS_RECORD_KEY`` is set, RPUSHes a JSON record to that Redis list
  (on ``SMS_RECORD_REDIS``, default ``redis://127.0.0.1:6379/9``) so a test
  can prove that *this Python worker* ran the task::

      {"mobile": "13800000000", "datas": ["123456", 5], "template_id": 1,
       "task_id": "<celery task id or null>", "worker": "python"}

The Rust worker's SMS gateway writes the same record with ``"worker": "rust"``.

With ``RONGLIAN_BASE_URL`` (and ``RONGLIAN_ACCOUNT_SID``, ``RONGLIAN_AUTH_TOKEN``,
``RONGLIAN_APP_ID``) set, it makes the real SDK's call instead: the signed
``POST /2013-12-26/Accounts/{sid}/SMS/TemplateSMS?sig=…`` with urllib, as the
SDK does, and returns 0 only on ``statusCode == "000000"``. ``bench/sms.sh``
uses it against a local gateway that answers after 100 ms, so the Python
worker waits on the network exactly as the Rust one does.
"""
import base64
import datetime
import hashlib
import json
import os
import urllib.request

# Imported lazily-enough: redis-py is installed with celery[redis].
import redis
from celery import current_task

_record_clients = {}


def _record_client(url):
    """One Redis client per URL, reused across tasks (a worker runs many)."""
    client = _record_clients.get(url)
    if client is None:
        # Bounded waits: a test must fail, not hang, if Redis is gone.
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        _record_clients[url] = client
    return client


class CCP(object):
    """发送短信的辅助类 (SMS helper), a singleton like the SDK wrapper it replaces."""

    def __new__(cls, *args, **kwargs):
        # 判断是否存在类属性_instance，_instance是类CCP的唯一对象，即单例
        # (the real one logs in to the gateway here, once per process)
        if not hasattr(cls, '_instance'):
            cls._instance = super().__new__(cls)
        return cls._instance

    def send_template_sms(self, to, datas, temp_id):
        """发送模板短信 (send a template SMS).

        :param to: 手机号码 (mobile number)
        :param datas: 内容数据, a list such as ``[sms_code, 5]`` (code, minutes valid)
        :param temp_id: 模板Id (template id; 1 is the gateway's test template)
        :return: 0 表示发送短信成功 (0 = sent), like the real helper
        """
        base_url = os.environ.get('RONGLIAN_BASE_URL')
        if base_url:
            return _send_through_ronglian(base_url, to, datas, temp_id)
        print(f'模拟发送短信 (not really sent): to={to} datas={datas!r} template_id={temp_id}')

        key = os.environ.get('SMS_RECORD_KEY')
        if key:
            request = getattr(current_task, 'request', None) if current_task else None
            record = {
                'mobile': to,
                'datas': list(datas),
                'template_id': temp_id,
                'task_id': getattr(request, 'id', None),
                'worker': 'python',
            }
            url = os.environ.get('SMS_RECORD_REDIS', 'redis://127.0.0.1:6379/9')
            _record_client(url).rpush(key, json.dumps(record))
        return 0


def _send_through_ronglian(base_url, to, datas, temp_id):
    """The SDK's ``sendTemplateSMS``: one signed POST; 0 if the gateway took it."""
    sid = os.environ['RONGLIAN_ACCOUNT_SID']
    token = os.environ['RONGLIAN_AUTH_TOKEN']
    stamp = datetime.datetime.now().strftime('%Y%m%d%H%M%S')
    sig = hashlib.md5((sid + token + stamp).encode()).hexdigest().upper()
    body = json.dumps({'to': to, 'appId': os.environ['RONGLIAN_APP_ID'],
                       'templateId': str(temp_id), 'datas': [str(d) for d in datas]}).encode()
    request = urllib.request.Request(
        f'{base_url}/2013-12-26/Accounts/{sid}/SMS/TemplateSMS?sig={sig}', data=body, method='POST',
        headers={'Accept': 'application/json', 'Content-Type': 'application/json;charset=utf-8',
                 'Authorization': base64.b64encode(f'{sid}:{stamp}'.encode()).decode()})
    with urllib.request.urlopen(request, timeout=float(os.environ.get('RONGLIAN_TIMEOUT_SECS', 10))) as answer:
        status = json.loads(answer.read()).get('statusCode')
    return 0 if status == '000000' else -1
