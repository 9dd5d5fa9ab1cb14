"""Static vocabularies for the sample generator: Chinese names, cities, stores, channels.

Every hanzi here is GBK-encodable (checked in the tests), because the loyalty-card export is GBK.
"""

from __future__ import annotations

__all__ = [
    "SURNAMES",
    "MALE_GIVEN",
    "FEMALE_GIVEN",
    "CITIES",
    "EMAIL_DOMAINS",
    "COMPANY_DOMAINS",
    "COMPANY_MAILBOXES",
    "SURVEY_CATEGORIES",
    "SURVEY_COMMENTS",
]

# (surname, pinyin, relative frequency in per cent of the population, rounded)
SURNAMES: list[tuple[str, str, float]] = [
    ("王", "wang", 7.1), ("李", "li", 7.0), ("张", "zhang", 6.6), ("刘", "liu", 5.4),
    ("陈", "chen", 4.5), ("杨", "yang", 3.1), ("黄", "huang", 2.0), ("赵", "zhao", 2.0),
    ("吴", "wu", 1.8), ("周", "zhou", 1.7), ("徐", "xu", 1.3), ("孙", "sun", 1.2),
    ("马", "ma", 1.1), ("朱", "zhu", 1.1), ("胡", "hu", 1.0), ("郭", "guo", 1.0),
    ("何", "he", 0.9), ("高", "gao", 0.9), ("林", "lin", 0.9), ("罗", "luo", 0.8),
    ("郑", "zheng", 0.8), ("梁", "liang", 0.7), ("谢", "xie", 0.6), ("宋", "song", 0.5),
    ("唐", "tang", 0.5), ("许", "xu", 0.5), ("韩", "han", 0.5), ("冯", "feng", 0.5),
    ("邓", "deng", 0.5), ("曹", "cao", 0.5), ("彭", "peng", 0.4), ("曾", "zeng", 0.4),
    ("肖", "xiao", 0.4), ("田", "tian", 0.4), ("董", "dong", 0.4), ("袁", "yuan", 0.4),
    ("潘", "pan", 0.3), ("于", "yu", 0.3), ("蒋", "jiang", 0.3), ("蔡", "cai", 0.3),
    ("余", "yu", 0.3), ("杜", "du", 0.3), ("叶", "ye", 0.3), ("程", "cheng", 0.3),
    ("苏", "su", 0.3), ("魏", "wei", 0.3), ("吕", "lv", 0.3), ("丁", "ding", 0.3),
    ("任", "ren", 0.3), ("沈", "shen", 0.3), ("姚", "yao", 0.3), ("卢", "lu", 0.3),
    ("姜", "jiang", 0.2), ("崔", "cui", 0.2), ("钟", "zhong", 0.2), ("谭", "tan", 0.2),
    ("陆", "lu", 0.2), ("汪", "wang", 0.2), ("范", "fan", 0.2), ("金", "jin", 0.2),
]

MALE_GIVEN: list[tuple[str, str]] = [
    ("伟", "wei"), ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("勇", "yong"), ("杰", "jie"),
    ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("刚", "gang"), ("平", "ping"), ("辉", "hui"),
    ("鹏", "peng"), ("华", "hua"), ("飞", "fei"), ("鑫", "xin"), ("波", "bo"), ("斌", "bin"),
    ("宇", "yu"), ("浩", "hao"), ("凯", "kai"), ("健", "jian"), ("俊", "jun"), ("帆", "fan"),
    ("帅", "shuai"), ("旭", "xu"), ("宁", "ning"), ("龙", "long"), ("林", "lin"), ("欢", "huan"),
    ("阳", "yang"), ("建", "jian"), ("国", "guo"), ("志", "zhi"), ("文", "wen"), ("博", "bo"),
    ("晨", "chen"), ("子", "zi"), ("轩", "xuan"), ("然", "ran"), ("泽", "ze"), ("睿", "rui"),
    ("豪", "hao"), ("亮", "liang"), ("成", "cheng"), ("东", "dong"),
]

FEMALE_GIVEN: list[tuple[str, str]] = [
    ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"), ("艳", "yan"),
    ("娟", "juan"), ("霞", "xia"), ("秀", "xiu"), ("玲", "ling"), ("婷", "ting"), ("雪", "xue"),
    ("慧", "hui"), ("莹", "ying"), ("倩", "qian"), ("琳", "lin"), ("晶", "jing"), ("颖", "ying"),
    ("佳", "jia"), ("欣", "xin"), ("怡", "yi"), ("悦", "yue"), ("梅", "mei"), ("兰", "lan"),
    ("红", "hong"), ("燕", "yan"), ("萍", "ping"), ("琴", "qin"), ("云", "yun"), ("璐", "lu"),
    ("瑶", "yao"), ("雨", "yu"), ("萱", "xuan"), ("诗", "shi"), ("涵", "han"), ("梦", "meng"),
    ("洁", "jie"), ("淑", "shu"), ("露", "lu"), ("青", "qing"),
]

# (city, province, weight)
CITIES: list[tuple[str, str, float]] = [
    ("上海", "上海", 9.0), ("北京", "北京", 8.5), ("广州", "广东", 6.5), ("深圳", "广东", 6.5),
    ("杭州", "浙江", 5.0), ("成都", "四川", 5.0), ("重庆", "重庆", 4.5), ("武汉", "湖北", 4.0),
    ("南京", "江苏", 4.0), ("苏州", "江苏", 3.5), ("西安", "陕西", 3.5), ("天津", "天津", 3.0),
    ("长沙", "湖南", 3.0), ("郑州", "河南", 3.0), ("青岛", "山东", 2.5), ("济南", "山东", 2.0),
    ("宁波", "浙江", 2.0), ("厦门", "福建", 2.0), ("福州", "福建", 1.8), ("合肥", "安徽", 2.0),
    ("昆明", "云南", 1.8), ("沈阳", "辽宁", 1.8), ("大连", "辽宁", 1.5), ("东莞", "广东", 1.8),
    ("佛山", "广东", 1.6), ("无锡", "江苏", 1.5), ("哈尔滨", "黑龙江", 1.5), ("石家庄", "河北", 1.4),
    ("南昌", "江西", 1.3), ("贵阳", "贵州", 1.2),
]

# (domain, weight); qq.com mailboxes are usually the numeric QQ number
EMAIL_DOMAINS: list[tuple[str, float]] = [
    ("qq.com", 0.33), ("163.com", 0.20), ("126.com", 0.09), ("gmail.com", 0.07),
    ("outlook.com", 0.07), ("sina.com", 0.05), ("hotmail.com", 0.05), ("foxmail.com", 0.05),
    ("139.com", 0.05), ("yeah.net", 0.04),
]

COMPANY_DOMAINS: list[str] = [
    "huaxin-tech.com", "dongfang-trade.cn", "jinlong-logistics.com", "tianyu-media.cn",
    "hengda-mfg.com", "ruifeng-consult.cn", "xinghe-soft.com", "baoli-foods.cn",
    "zhongke-bio.com", "yongsheng-build.cn", "meida-design.com", "guanghua-edu.cn",
]
COMPANY_MAILBOXES: list[str] = ["office", "purchase", "admin", "hr", "finance", "service"]

SURVEY_CATEGORIES: list[str] = ["delivery", "product_quality", "service", "price", "app"]

# comments by sentiment: 0 = detractor, 1 = passive, 2 = promoter
SURVEY_COMMENTS: dict[int, list[str]] = {
    0: ["物流太慢了", "客服不回复", "商品有质量问题", "退款很麻烦", "价格偏贵", "App 经常闪退"],
    1: ["还可以", "一般般", "包装可以再好一点", "价格还行", "", "希望多一些优惠"],
    2: ["非常满意", "发货很快", "质量很好，会回购", "客服态度好", "推荐给朋友了", "性价比高"],
}

# comments by NPS group and complaint category ("" = no comment); each phrase is about its category
SURVEY_COMMENTS_BY_CATEGORY: dict[str, dict[str, list[str]]] = {
    "detractor": {
        "delivery": ["物流太慢了", "快递一周才到", "包裹破损了", "配送员态度差，物流太慢", "发货太慢了"],
        "product_quality": ["商品有质量问题", "用了过敏", "和描述不符", "质量太差了"],
        "service": ["客服不回复", "退款很麻烦", "售后推来推去", "客服态度差"],
        "price": ["价格偏贵", "比别家贵", "优惠太少了", "价格太贵了"],
        "app": ["App 经常闪退", "小程序老是卡", "付款页面打不开", "App 登录不了"],
    },
    "passive": {
        "delivery": ["物流还行", "发货有点慢", "", "快递一般"],
        "product_quality": ["还可以", "一般般", "包装可以再好一点", ""],
        "service": ["客服回复有点慢", "还可以", ""],
        "price": ["价格还行", "希望多一些优惠", ""],
        "app": ["App 还可以", "希望小程序更快一点", ""],
    },
    "promoter": {
        "delivery": ["发货很快", "物流给力", "第二天就到了"],
        "product_quality": ["质量很好，会回购", "非常满意", "效果很好"],
        "service": ["客服态度好", "售后很专业", "推荐给朋友了"],
        "price": ["性价比高", "活动很划算"],
        "app": ["App 很好用", "小程序下单很方便"],
    },
}
