"""tasks.py: the blog's Celery task ``SMS`` (``send_sms_code``).

Registered by ``celery_app.autodiscover_tasks(['celery_tasks.sms', ...])`` in
``main.py``. The explicit ``name='SMS'`` is what goes on the wire (the ``task``
header), so a producer in any language, e.g. the Rust ``celery-sms-demo``,
only needs that name::

    send_sms_code.delay('13800000000', '123456')   # from Django/Python
    # == a message {"task": "SMS", args ["13800000000", "123456"]} on queue "celery"
"""
# 编写异步任务代码
from celery_tasks.sms.yuntongxun.sms import CCP
from celery_tasks.main import celery_app


@celery_app.task(name='SMS')  # 此装饰器作为是让下面的函数真正的成功celery的任务
def send_sms_code(mobile, sms_code):
    """
    利用celery异步发送短信
    :param mobile: 要收到短信的手机号
    :param sms_code: 短信验证码
    """
    # 5 = minutes the code stays valid; 1 = the gateway's template id.
    CCP().send_template_sms(mobile, [sms_code, 5], 1)
